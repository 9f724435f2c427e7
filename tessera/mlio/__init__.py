"""The ML stage's warehouse I/O: what the models read from the marts (training data, point in
time, pseudonymised where it reaches MLflow) and the ml.* tables they write. The SQL is in sql/,
run with bound parameters; the modelling itself is in ml/."""
