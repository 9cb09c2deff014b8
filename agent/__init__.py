"""mcqa.agent: the LangGraph graph (retrieve examples, answer, verify, reconsider, propose and rerank
misconceptions, finalize) that solves a batch of items. See ../shared/DESIGN.md."""
