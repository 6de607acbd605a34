"""Entry point for `ray job submit`: the same code path as `handvae generate`, with the same flags.

From the repository root, as for jobs/train.py (docs/cluster.md):

    export RAY_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=token
    ray job submit --submission-id generate-exp1 --working-dir . --runtime-env jobs/runtime_env.yaml -- \\
        python jobs/generate.py --model s3://BUCKET/runs/exp1/model.pt --mnist-dir /home/ray/data/mnist \\
        --download --num-styles 1000 --use-gpu --out s3://BUCKET/generated/exp1

--out and --model are URIs: the workers write the data set's files, and the model actors read the
model, from whichever node they run on (the driver commits). On a cluster of several nodes the
command refuses local paths there before it starts.

Under `ray job submit`, Ray sets RAY_ADDRESS and the script joins that cluster; run directly without
RAY_ADDRESS, it starts an embedded local Ray.
"""

import sys

from handvae.cli import app

if __name__ == "__main__":
    sys.exit(app(["generate", *sys.argv[1:]]))
