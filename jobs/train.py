"""Entry point for `ray job submit`: the same code path as `handvae train`, with the same flags.

From the repository root, with `ray dashboard cluster.yaml` running (the tunnel to the Jobs API) and
the cluster's token in ~/.ray/auth_token (docs/cluster.md):

    export RAY_ADDRESS=http://127.0.0.1:8265 RAY_AUTH_MODE=token
    ray job submit --submission-id train-exp1 --no-wait --working-dir . --runtime-env jobs/runtime_env.yaml -- \\
        python jobs/train.py --letters-csv "s3://BUCKET/data/A_Z Handwritten Data.csv" \\
        --mnist-dir /home/ray/data/mnist --download --storage-path s3://BUCKET/runs --run-name exp1 \\
        --num-workers 4 --use-gpu --no-report
    ray job logs -f train-exp1        # follow the logs; ray job status / ray job stop train-exp1

Resume (after a stop or a failure, or with a larger --epochs): the same command with the same
--run-name and --storage-path under a new --submission-id (train-exp1-resume); it continues after
the latest checkpoint in s3://BUCKET/runs/exp1.

Under `ray job submit`, Ray sets RAY_ADDRESS and the script joins that cluster; run directly without
RAY_ADDRESS, it starts an embedded local Ray.
"""

import sys

from handvae.cli import app

if __name__ == "__main__":
    sys.exit(app(["train", *sys.argv[1:]]))
