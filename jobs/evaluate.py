"""Entry point for `ray job submit`: the same code path as `handvae evaluate`, with the same flags.

From the repository root, as for jobs/train.py (docs/cluster.md):

    export RAY_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=token
    ray job submit --submission-id eval-exp1 --working-dir . --runtime-env jobs/runtime_env.yaml -- \\
        python jobs/evaluate.py --model s3://BUCKET/runs/exp1/model.pt \\
        --letters-csv "s3://BUCKET/data/A_Z Handwritten Data.csv" --mnist-dir /home/ray/data/mnist --download \\
        --split test --use-gpu --out /home/ray/outputs/reports/exp1
    ray rsync-down cluster.yaml /home/ray/outputs/reports/exp1 reports/exp1

--out is a folder on the head node, where the job's driver writes the report (the command refuses
URIs there); fetch it with `ray rsync-down` before `ray down`.

Under `ray job submit`, Ray sets RAY_ADDRESS and the script joins that cluster; run directly without
RAY_ADDRESS, it starts an embedded local Ray.
"""

import sys

from handvae.cli import app

if __name__ == "__main__":
    sys.exit(app(["evaluate", *sys.argv[1:]]))
