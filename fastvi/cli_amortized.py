"""``fastvi amortized fit|gap|demo``: amortized variational inference from the command line.

Kept apart from ``fastvi.cli`` (the mixture jobs); ``fastvi.cli`` registers it.
"""
import os
import time

import numpy as np

from .amortized_io import load_amortized, save_amortized

DEMO_EPOCHS = 40


def _widths(text):
    """'128,64' -> (128, 64); '' or 'linear' -> ()."""
    if text in ("", "linear", None):
        return ()
    try:
        widths = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"layer widths must be comma-separated integers, got {text!r}") from None
    if any(w < 1 for w in widths):
        raise ValueError(f"layer widths must be >= 1, got {text!r}")
    return widths


def _print_report(report):
    for key in ("log_px", "elbo_best", "elbo_inference", "approximation_gap",
                "amortization_gap"):
        print(f"{key:18s} {report[key]:10.4f} nats per example")


def cmd_fit(args):
    from . import PPCA, VAE
    from .io import open_source
    source = open_source(args.data, chunk_rows=args.chunk_size)
    common = dict(encoder_hidden=_widths(args.encoder_hidden), activation=args.activation,
                  inference=args.inference, refine_steps=args.refine_steps,
                  batch_size=args.batch_size, max_epochs=args.epochs,
                  learning_rate=args.learning_rate, random_state=args.seed,
                  dtype=args.dtype, verbose=1, chunk_size=args.chunk_size)
    if args.model == "ppca":
        model = PPCA(args.latent, **common)
    else:
        model = VAE(args.latent, decoder_hidden=_widths(args.decoder_hidden),
                    likelihood=args.likelihood, **common)
    checkpoint_path = args.checkpoint or args.output + ".ckpt"
    resume = None
    if args.resume:
        from .checkpoint import load_checkpoint
        resume, _ = load_checkpoint(checkpoint_path)
        print(f"resuming from {checkpoint_path} after epoch {resume.epochs}")
    from .checkpoint import Checkpointer
    checkpointer = Checkpointer(checkpoint_path, every_seconds=None)
    started = time.perf_counter()
    try:
        model.fit(source, checkpoint=checkpointer, resume=resume)
    except KeyboardInterrupt:
        print(f"fastvi: interrupted; go on with the same command and --resume "
              f"(checkpoint {checkpoint_path})")
        raise
    elapsed = time.perf_counter() - started
    save_amortized(model, args.output)
    os.remove(checkpoint_path)
    rows = source.n_rows * args.epochs
    print(f"{type(model).__name__} (d={args.latent}, {args.inference}) on {source.label}: "
          f"{args.epochs} epochs, {elapsed:.1f} s, {rows / elapsed:,.0f} examples/s; "
          f"last ELBO {model.elbo_history_[-1]:.4f} per row")
    print(f"model        saved to {args.output}")
    return 0


def cmd_gap(args):
    from .io import open_source
    model = load_amortized(args.model)
    source = open_source(args.data)
    if type(model).__name__ == "PPCA":
        report = model.gap_report(source)
    else:
        report = model.gap_report(source, n_importance=args.importance,
                                  optimise_steps=args.optimise_steps)
    print(f"gap report of {args.model} on {source.label} ({source.n_rows} rows)")
    _print_report(report)
    return 0


def cmd_demo(args):
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise ValueError("the demo uses the digits data bundled with scikit-learn: "
                         "pip install scikit-learn") from None
    from . import VAE
    X = load_digits().data / 16.0
    order = np.random.default_rng(args.seed).permutation(len(X))
    train, test = X[order[:1500]], X[order[1500:]]
    print(f"digits (bundled with scikit-learn): train {train.shape}, test {test.shape}; "
          f"Bernoulli VAE d=8, encoder 64 and decoder 128 (tanh), {args.epochs} epochs")
    started = time.perf_counter()
    model = VAE(8, decoder_hidden=(128,), encoder_hidden=(64,), likelihood="bernoulli",
                max_epochs=args.epochs, learning_rate=2e-3, random_state=args.seed).fit(train)
    print(f"trained in {time.perf_counter() - started:.1f} s; last training ELBO "
          f"{model.elbo_history_[-1]:.3f} per row")
    _print_report(model.gap_report(test, n_importance=500, optimise_steps=200))
    return 0


def add_parser(sub, positive_int):
    """Register ``amortized`` and its subcommands on the main parser's subparsers."""
    p = sub.add_parser("amortized", help="amortized VI: PPCA and VAEs (fit, gap, demo)")
    inner = p.add_subparsers(dest="amortized_command", metavar="COMMAND", required=True)

    f = inner.add_parser("fit", help="train a PPCA or VAE on DATA and save it")
    f.add_argument("data", metavar="DATA", help="file.npy or file.h5:/dataset")
    f.add_argument("-o", "--output", required=True, metavar="MODEL.h5")
    f.add_argument("--model", choices=("vae", "ppca"), default="vae")
    f.add_argument("--latent", type=positive_int, default=2, help="dimension of z (2)")
    f.add_argument("--decoder-hidden", default="", metavar="W1,W2",
                   help="decoder hidden widths (vae; default: linear)")
    f.add_argument("--encoder-hidden", default="", metavar="W1,W2",
                   help="encoder hidden widths (default: linear)")
    f.add_argument("--activation", choices=("tanh", "relu", "softplus"), default="tanh")
    f.add_argument("--likelihood", choices=("gaussian", "bernoulli"), default="gaussian")
    f.add_argument("--inference", choices=("amortized", "per_example", "semi_amortized"),
                   default="amortized")
    f.add_argument("--refine-steps", type=int, default=10)
    f.add_argument("--epochs", type=positive_int, default=20)
    f.add_argument("--batch-size", type=positive_int, default=128)
    f.add_argument("--learning-rate", type=float, default=1e-3)
    f.add_argument("--chunk-size", type=positive_int, default=65536)
    f.add_argument("--dtype", choices=("float32", "float64"), default="float64")
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--checkpoint", metavar="PATH",
                   help="written after every epoch (MODEL.h5.ckpt; removed at the end)")
    f.add_argument("--resume", action="store_true",
                   help="go on from the checkpoint of an interrupted run of this command")
    f.set_defaults(func=cmd_fit)

    g = inner.add_parser("gap", help="approximation and amortization gaps of MODEL on DATA")
    g.add_argument("model", metavar="MODEL.h5")
    g.add_argument("data", metavar="DATA")
    g.add_argument("--importance", type=positive_int, default=1000,
                   help="draws of the importance-weighted bound (VAE)")
    g.add_argument("--optimise-steps", type=positive_int, default=400,
                   help="gradient steps of the per-example optimum psi* (VAE)")
    g.set_defaults(func=cmd_gap)

    d = inner.add_parser("demo", help="a VAE on scikit-learn's bundled digits, its gaps")
    d.add_argument("--epochs", type=positive_int, default=DEMO_EPOCHS)
    d.add_argument("--seed", type=int, default=0)
    d.set_defaults(func=cmd_demo)
