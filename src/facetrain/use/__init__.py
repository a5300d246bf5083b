"""Put a trained model to work: embed photo sets, classify people (with `unknown`), filter
noisy datasets. Every step uses the model's own preprocessing record."""
