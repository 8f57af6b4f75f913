"""The amortization gap on the digits data: against encoder width and refinement steps.

Usage::

    python bench/amortization_gap.py [--epochs 150] [--latent 8] [--svg OUT.svg]

A Bernoulli VAE (decoder 8 -> 128 -> 64, tanh) is trained on 1500 of scikit-learn's
bundled digits (scaled to [0, 1]) with each encoder; the gap report is computed on the
other 297 rows (Cremer, Li & Duvenaud 2018): log p(x) by the importance-weighted bound
(1000 draws from the optimised q), the ELBO with psi optimised per row (400 gradient
steps from the encoder's psi), and the ELBO with the encoder's psi, then with the
encoder's psi refined by a number of steps (semi-amortized inference at test time).
Prints markdown tables and writes an SVG plot of both gaps.
"""
import argparse

import numpy as np
from sklearn.datasets import load_digits

import fastvi

WIDTHS = [(), (16,), (64,), (256,), (256, 256)]
STEPS = [0, 5, 20, 100]


def split():
    X = load_digits().data / 16.0
    order = np.random.default_rng(0).permutation(len(X))
    return X[order[:1500]], X[order[1500:]]


def report(model, test):
    return model.gap_report(test, n_importance=1000, optimise_steps=400, n_samples=64)


def svg_plot(path, widths, width_rows, step_rows):
    """Two small line plots side by side, hand-written SVG (no plotting dependency)."""
    def panel(x0, title, labels, rows):
        gaps = [(r["approximation_gap"], r["amortization_gap"]) for r in rows]
        top = max(max(g) for g in gaps) * 1.15 or 1.0
        w, h, left = 300, 200, 45
        parts = [f'<text x="{x0 + left}" y="15" font-size="12">{title}</text>',
                 f'<line x1="{x0 + left}" y1="{h}" x2="{x0 + w}" y2="{h}" stroke="black"/>',
                 f'<line x1="{x0 + left}" y1="25" x2="{x0 + left}" y2="{h}" stroke="black"/>',
                 f'<text x="{x0 + 2}" y="30" font-size="10">{top:.2f}</text>',
                 f'<text x="{x0 + 30}" y="{h}" font-size="10">0</text>']
        step = (w - left - 20) / max(1, len(labels) - 1)
        for i, label in enumerate(labels):
            parts.append(f'<text x="{x0 + left + i * step - 10}" y="{h + 15}" '
                         f'font-size="10">{label}</text>')
        for series, colour, name in ((0, "#1f77b4", "approximation"),
                                     (1, "#d62728", "amortization")):
            points = " ".join(f"{x0 + left + i * step:.1f},{h - (h - 25) * g[series] / top:.1f}"
                              for i, g in enumerate(gaps))
            parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" '
                         'stroke-width="2"/>')
            parts.append(f'<text x="{x0 + w - 90}" y="{40 + 14 * series}" font-size="10" '
                         f'fill="{colour}">{name} gap</text>')
        parts.append(f'<text x="{x0 + left}" y="{h + 28}" font-size="10">nats per example</text>')
        return parts

    body = (panel(0, "gap vs encoder width", widths, width_rows)
            + panel(330, "gap vs refinement steps", [str(s) for s in STEPS], step_rows))
    with open(path, "w") as f:
        f.write('<svg xmlns="http://www.w3.org/2000/svg" width="660" height="240" '
                'font-family="sans-serif">\n' + "\n".join(body) + "\n</svg>\n")


def table(label, names, rows):
    print(f"| {label} | log p(x) | ELBO(psi*) | ELBO(inference) | approximation gap | "
          "amortization gap |")
    print("|---|---|---|---|---|---|")
    for name, r in zip(names, rows):
        print(f"| {name} | {r['log_px']:.2f} | {r['elbo_best']:.2f} | {r['elbo_inference']:.2f} "
              f"| {r['approximation_gap']:.2f} | {r['amortization_gap']:.2f} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=150)
    parser.add_argument("--latent", type=int, default=8)
    parser.add_argument("--svg", default="amortization_gap.svg")
    args = parser.parse_args(argv)
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
    svg_plot(args.svg, names, width_rows, step_rows)
    print(f"\nplot: {args.svg}")


if __name__ == "__main__":
    main()
