"""The amortization gap on the digits data: against encoder width and refinement steps.

Usage::

    python bench/amortization_gap.py [--epochs 150] [--latent 8]   # run, write JSON, plot
    python bench/amortization_gap.py plot                          # redraw the PNG

A Bernoulli VAE (decoder 8 -> 128 -> 64, tanh) is trained on 1500 of scikit-learn's
bundled digits (scaled to [0, 1]) with each encoder; the gap report is computed on the
other 297 rows (Cremer, Li & Duvenaud 2018): log p(x) by the importance-weighted bound
(1000 draws from the optimised q), the ELBO with psi optimised per row (400 'plain'
gradient steps from the encoder's psi), and the ELBO with the encoder's psi, then with the
encoder's psi refined by a number of steps (semi-amortized inference at test time).
Prints markdown tables, writes them to ``bench/results/amortization_gap.json`` and draws
``bench/results/amortization_gap.png`` (both gaps, nats per row, against the encoder's
width and the refinement steps).
"""
import argparse
import json
import os
import platform
import time

import numpy as np
from sklearn.datasets import load_digits

import fastvi

HERE = os.path.dirname(os.path.abspath(__file__))
RESULTS = os.path.join(HERE, "results")
RESULTS_JSON = os.path.join(RESULTS, "amortization_gap.json")
WIDTHS = [(), (16,), (64,), (256,), (256, 256)]
STEPS = [0, 5, 20, 100]


def split():
    X = load_digits().data / 16.0
    order = np.random.default_rng(0).permutation(len(X))
    return X[order[:1500]], X[order[1500:]]


def report(model, test):
    # the 'plain' steps of psi* (the report's default before 'control'): the figures of
    # bench/results/amortization_gap.json and the README's tables were made with them
    return model.gap_report(test, n_importance=1000, optimise_steps=400, n_samples=64,
                            optimiser="plain")


def plot(path_json=RESULTS_JSON):
    """Both gaps against the encoder's width and against the refinement steps, from the
    JSON the run wrote: two panels in the style of ``bench/scaling.py``'s plots."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    with open(path_json) as handle:
        data = json.load(handle)
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 4.2), sharey=True)
    panels = ((axes[0], "encoder", "encoder hidden widths (linear: no hidden layer)",
               "against the encoder's width"),
              (axes[1], "steps", "test-time refinement steps of the encoder 64's psi",
               "against refinement (semi-amortized inference)"))
    for ax, key, xlabel, title in panels:
        ax.set_title(title, fontsize=9)
        rows = data[key]
        x = np.arange(len(rows))
        for gap, colour, label in (("approximation_gap", "#1f77b4", "approximation gap: "
                                    "log p(x) - ELBO(psi*)"),
                                   ("amortization_gap", "#d62728", "amortization gap: "
                                    "ELBO(psi*) - ELBO(inference)")):
            ax.plot(x, [r[gap] for r in rows], "-", marker="o", markersize=4,
                    color=colour, label=label)
        ax.set_xticks(x, [r["name"] for r in rows])
        ax.set_xlabel(xlabel)
        ax.grid(True, alpha=0.3)
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("gap (nats per row, held-out digits)")
    axes[0].legend(fontsize=8)
    fig.suptitle(data["title"], fontsize=9)
    fig.text(0.01, 0.005, f"{data['machine']}; {data['date']}; {data['command']}",
             fontsize=6, color="0.4")
    fig.tight_layout(rect=(0, 0.02, 1, 1))
    path = os.path.join(RESULTS, "amortization_gap.png")
    fig.savefig(path + ".tmp.png", dpi=110)
    plt.close(fig)
    os.replace(path + ".tmp.png", path)
    print("wrote", path)


def table(label, names, rows):
    print(f"| {label} | log p(x) | ELBO(psi*) | ELBO(inference) | approximation gap | "
          "amortization gap |")
    print("|---|---|---|---|---|---|")
    for name, r in zip(names, rows):
        print(f"| {name} | {r['log_px']:.2f} | {r['elbo_best']:.2f} | {r['elbo_inference']:.2f} "
              f"| {r['approximation_gap']:.2f} | {r['amortization_gap']:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", nargs="?", choices=["run", "plot"], default="run")
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--machine", default=f"{platform.processor() or platform.machine()}, "
                                             f"{os.cpu_count()} cores",
                        help="the machine's words for the plot's footnote")
    args = parser.parse_args(argv)
    if args.what == "plot":
        plot()
        return
    started = time.perf_counter()
    train, test = split()
    common = dict(decoder_hidden=(128,), likelihood="bernoulli", max_epochs=args.epochs,
                  learning_rate=2e-3, random_state=0)
    width_rows, models = [], {}
    for width in WIDTHS:
        model = fastvi.VAE(args.latent, encoder_hidden=width, **common).fit(train)
        models[width] = model
        width_rows.append(report(model, test))
    names = ["linear" if not w else "-".join(map(str, w)) for w in WIDTHS]
    print(f"digits: train {train.shape[0]}, test {test.shape[0]}; Bernoulli VAE, d = "
          f"{args.latent}, decoder 128 tanh, {args.epochs} epochs; nats per example")
    table("encoder", names, width_rows)
    step_rows = []
    model = models[(64,)]
    for steps in STEPS:
        model.inference, model.refine_steps = ("semi_amortized", steps) if steps else (
            "amortized", 0)
        step_rows.append(report(model, test))
    print()
    table("refinement steps (encoder 64)", [str(s) for s in STEPS], step_rows)
    seconds = time.perf_counter() - started
    print(f"\n{seconds:.0f} s")
    command = "python bench/amortization_gap.py" + (
        f" --epochs {args.epochs}" if args.epochs != 150 else "") + (
        f" --latent {args.latent}" if args.latent != 8 else "")
    data = dict(title=f"gaps on 297 held-out digits: Bernoulli VAE, d = {args.latent}, "
                      f"decoder 128 tanh, {args.epochs} epochs on 1500 rows",
                encoder=[dict(name=n, **r) for n, r in zip(names, width_rows)],
                steps=[dict(name=str(s), **r) for s, r in zip(STEPS, step_rows)],
                machine=args.machine, date=time.strftime("%Y-%m-%d"), command=command,
                seconds=seconds)
    with open(RESULTS_JSON + ".tmp", "w") as handle:
        json.dump(data, handle, indent=1)
    os.replace(RESULTS_JSON + ".tmp", RESULTS_JSON)
    plot()


if __name__ == "__main__":
    main()
