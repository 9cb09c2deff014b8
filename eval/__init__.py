"""mcqa.eval: metrics (accuracy, MAP@k, Recall@k), the batch runner over splits, reports."""
