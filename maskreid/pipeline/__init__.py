"""What each DVC stage does, one module per stage (prepare, train, evaluate, masks), so that a stage loads, and
dvc.yaml declares, only the code it runs. Nothing is imported here: importing a stage's module must not pull
in the others (tests/test_stage_deps.py checks dvc.yaml against what each stage loads)."""
