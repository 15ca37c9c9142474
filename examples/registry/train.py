"""Fit the `flowers` model and write one registry version's files into a folder.

    python examples/registry/train.py OUT_DIR [--c 1.0]

Uses scikit-learn's bundled iris data (nothing is downloaded). `--c` is the inverse
regularization strength: a small value gives a weaker model, handy for trying a rollout.
Writes `params.json` (what `flowers.py` loads) and prints the held-out accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

CLASSES = ["setosa", "versicolor", "virginica"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--c", type=float, default=1.0, help="inverse regularization strength")
    args = parser.parse_args()

    features, labels = load_iris(return_X_y=True)
    x_train, x_test, y_train, y_test = train_test_split(
        features, labels, test_size=0.3, stratify=labels, random_state=0
    )
    model = LogisticRegression(C=args.c, max_iter=1000).fit(x_train, y_train)
    accuracy = float(model.score(x_test, y_test))
    args.out_dir.mkdir(parents=True, exist_ok=True)
    params = {
        "classes": CLASSES,
        "coef": model.coef_.tolist(),
        "intercept": model.intercept_.tolist(),
        "held_out_accuracy": accuracy,
    }
    (args.out_dir / "params.json").write_text(json.dumps(params, indent=2))
    print(f"{accuracy:.3f}")


if __name__ == "__main__":
    main()
