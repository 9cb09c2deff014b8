"""mcqa.kaggle: the offline bundle, submission writers and validators for Kaggle code competitions."""
