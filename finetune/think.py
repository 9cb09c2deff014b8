"""CoT "think" data: a teacher LLM explains, in a sentence, the misconception behind a wrong answer.

For each sampled (item, wrong letter) of a training split the teacher gets the agent's think chat
(`mcqa.agent.prompts.think_chat`, which already names the correct answer) plus, where the dataset
labels one (Eedi, MAP), the gold misconception as a private hint to rephrase for this question. The
row stores the agent's chat *without* the hint as `prompt`, so `mcqa train llm` with `task: think`
teaches a student model to produce, from what the agent sees at inference, what the teacher wrote
with the label in hand (distillation with privileged information).

Reproducible from the seed: items are sampled with `random.Random(seed)` after sorting, decoding is
greedy. The JSONL is appended row by row; a rerun skips the rows already written (resume).
"""

from __future__ import annotations

import json
import random
from pathlib import Path

HINT = (
    '\n\n(Note for you only: the misconception labelled for answer {letter} is "{name}". Describe it in '
    "your own words, specifically for this question, without mentioning this note.)"
)


def sample_pairs(items, limit: int | None, seed: int) -> list[tuple]:
    """(item, wrong letter, labelled misconception ids) to explain: every wrong answer of labelled items
    (labelled ones only where the dataset labels misconceptions), `limit` of them drawn with the seed."""
    pairs = []
    for item in sorted(items, key=lambda it: it.id):
        if not item.answer:
            continue
        labelled = any(item.misconceptions.values())
        for letter in item.letters:
            ids = item.misconceptions.get(letter, [])
            if letter != item.answer and (ids or not labelled):
                pairs.append((item, letter, list(ids)))
    rng = random.Random(seed)
    rng.shuffle(pairs)
    return pairs[:limit] if limit else pairs


def generate_think_data(
    dataset: str,
    split: str,
    out: Path,
    llm,
    limit: int | None = 200,
    seed: int = 0,
    max_tokens: int = 64,
    batch: int = 8,
    root: Path | None = None,
    progress=None,
) -> dict:
    """Write (or complete) `out`; returns counts. `llm` is any mcqa.llm backend (generate is greedy)."""
    from mcqa.agent.prompts import Prompts, think_chat
    from mcqa.rag.splits import load_items

    prompts = Prompts()
    items = load_items(dataset, split, root)
    names: dict[str, str] = {}
    if any(it.misconceptions for it in items):
        from mcqa.datasets import load_misconceptions

        names = {m.id: m.name for m in load_misconceptions(dataset, root)}
    pairs = sample_pairs(items, limit, seed)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = set()
    if out.exists():
        done = {(r["item_id"], r["letter"]) for r in map(json.loads, out.read_text().splitlines()) if r}
    todo = [p for p in pairs if (p[0].id, p[1]) not in done]
    written, teacher_name = 0, str(getattr(getattr(llm, "config", None), "model", llm.name))
    with out.open("a") as handle:
        for start in range(0, len(todo), batch):
            chunk = todo[start : start + batch]
            chats, teacher = [], []
            for item, letter, ids in chunk:
                chat = think_chat(item, letter, prompts)
                chats.append(chat)
                hint = next((names[i] for i in ids if i in names), None)
                if hint:
                    hinted = chat[1]["content"] + HINT.format(letter=letter, name=hint)
                    chat = [chat[0], {"role": "user", "content": hinted}]
                teacher.append(chat)
            texts = llm.generate(teacher, max_tokens=max_tokens, stop=["\n\n"])
            for (item, letter, ids), chat, text in zip(chunk, chats, texts, strict=True):
                handle.write(
                    json.dumps(
                        {
                            "dataset": dataset,
                            "split": split,
                            "item_id": item.id,
                            "letter": letter,
                            "misconception_ids": ids,
                            "misconception": next((names[i] for i in ids if i in names), None),
                            "prompt": chat,
                            "explanation": text.strip(),
                            "teacher": teacher_name,
                            "seed": seed,
                        }
                    )
                    + "\n"
                )
                written += 1
            handle.flush()
            if progress:
                progress(len(done) + written, len(pairs))
    return {
        "pairs": len(pairs),
        "already_done": len(done & {(p[0].id, p[1]) for p in pairs}),
        "written": written,
        "out": str(out),
    }
