"""Entry point for `ray job submit`: the same code path as `handvae generate`, with the same flags.

    ray job submit --working-dir . -- python jobs/generate.py --model runs/NAME/model.pt \
        --mnist-dir /data/mnist --num-styles 1000 --out /shared/generated/NAME

With RAY_ADDRESS set (as `ray job submit` does) it joins that cluster; otherwise it starts an
embedded local Ray.
"""

import sys

from handvae.cli import app

if __name__ == "__main__":
    sys.exit(app(["generate", *sys.argv[1:]]))
