"""Entry point for `ray job submit`: the same code path as `handvae train`, with the same flags.

    ray job submit --working-dir . -- python jobs/train.py --epochs 10 --num-workers 2

With RAY_ADDRESS set (as `ray job submit` does) it joins that cluster; otherwise it starts an
embedded local Ray.
"""

import sys

from handvae.cli import app

if __name__ == "__main__":
    sys.exit(app(["train", *sys.argv[1:]]))
