"""mcqa.rag: embedders, FAISS stores of solved examples and of misconceptions, hard-negative mining."""
