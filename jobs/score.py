"""Entry point for `ray job submit`: the same code path as `handvae score`, with the same flags.

From the repository root, as for jobs/generate.py (docs/cluster.md):

    export RAY_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=token
    ray job submit --submission-id score-exp1 --working-dir . --runtime-env jobs/runtime_env.yaml -- \\
        python jobs/score.py --dataset s3://BUCKET/generated/exp1 \\
        --letters-csv "s3://BUCKET/data/A_Z Handwritten Data.csv" --mnist-dir /home/ray/data/mnist --download \\
        --out /home/ray/outputs/reports/exp1-cas

Under `ray job submit`, Ray sets RAY_ADDRESS and the script joins that cluster; run directly without
RAY_ADDRESS, it starts an embedded local Ray.
"""

import sys

from handvae.cli import app

if __name__ == "__main__":
    sys.exit(app(["score", *sys.argv[1:]]))
