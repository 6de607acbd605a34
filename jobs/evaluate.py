"""Entry point for `ray job submit`: the same code path as `handvae evaluate`, with the same flags.

    ray job submit --working-dir . -- python jobs/evaluate.py --model runs/NAME/model.pt \
        --mnist-dir /data/mnist --split test --out /shared/reports/NAME

With RAY_ADDRESS set (as `ray job submit` does) it joins that cluster; otherwise it starts an
embedded local Ray.
"""

import sys

from handvae.cli import app

if __name__ == "__main__":
    sys.exit(app(["evaluate", *sys.argv[1:]]))
