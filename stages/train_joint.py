"""DVC stage train_joint@<dataset>: Stage 3: train F with hidden top-mask pixels and M jointly."""

from maskreid.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage("Stage 3: train F with hidden top-mask pixels and M jointly", "maskreid.pipeline.train:train_stage3", distributed=True)
