"""mcqa.finetune: LoRA SFT of the LLM, embedder and reranker training, distillation, export."""
