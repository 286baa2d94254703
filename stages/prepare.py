"""DVC stage prepare@<dataset>: Build and validate the dataset manifest."""

from maskreid.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage("Build and validate the dataset manifest", "maskreid.pipeline.prepare:prepare")
