"""DVC stage cross_evaluate@<name>: F trained on one dataset, scored on another's test split."""

from maskreid.pipeline.runner import run_stage

if __name__ == "__main__":
    run_stage("Cross-domain evaluation", "maskreid.pipeline.cross:cross_evaluate", target="cross_domain")
