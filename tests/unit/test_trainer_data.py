"""trainer/data.py: sources, held-out split, clear errors for bad input, and the resumable cursor."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlvr.paths import REPO_ROOT
from trainer.data import (
    ADDITION_PROMPT,
    DataConfig,
    DataError,
    Task,
    TaskStream,
    addition_tasks,
    build_tasks,
    load_jsonl,
)

EXAMPLES = REPO_ROOT / "examples" / "data"


def _write(tmp_path: Path, lines: list[str], name: str = "d.jsonl") -> Path:
    p = tmp_path / name
    p.write_text("\n".join(lines) + "\n")
    return p


def test_jsonl_prompt_and_messages_forms(tmp_path: Path) -> None:
    p = _write(
        tmp_path,
        [
            json.dumps({"prompt": "2+2?", "answer": "4"}),
            "",
            json.dumps({"id": "m1", "messages": [{"role": "user", "content": "hi"}], "schema": {"type": "object"}}),
        ],
    )
    tasks = load_jsonl(p, DataConfig(source="jsonl", system_prompt="Be terse."))
    assert [t.id for t in tasks] == ["d:1", "m1"]
    assert tasks[0].messages == [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "2+2?"}]
    assert tasks[0].fields == {"answer": "4"}
    assert tasks[1].fields == {"schema": {"type": "object"}}
    assert tasks[1].source == f"{p}:3"


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ("{not json", "not valid JSON"),
        (json.dumps({"answer": "4"}), "field 'messages' or 'prompt'"),
        (json.dumps({"prompt": ""}), "field 'prompt'"),
        (json.dumps({"prompt": 3}), "field 'prompt'"),
        (json.dumps({"messages": []}), "field 'messages'"),
        (json.dumps({"messages": [{"role": "robot", "content": "x"}]}), r"field 'messages\[0\]'"),
        (json.dumps({"messages": [{"role": "user"}]}), r"field 'messages\[0\]'"),
        (json.dumps({"prompt": "x", "id": ""}), "field 'id'"),
        (json.dumps(["a list"]), "expected a JSON object"),
    ],
)
def test_bad_jsonl_names_file_line_and_field(tmp_path: Path, line: str, field: str) -> None:
    p = _write(tmp_path, [json.dumps({"prompt": "fine", "answer": "1"}), line])
    with pytest.raises(DataError, match=rf"{p}:2: .*{field}|{p}:2: {field}"):
        load_jsonl(p, DataConfig(source="jsonl"))


def test_duplicate_ids_and_empty_files_are_errors(tmp_path: Path) -> None:
    p = _write(tmp_path, [json.dumps({"id": "a", "prompt": "x"}), json.dumps({"id": "a", "prompt": "y"})])
    with pytest.raises(DataError, match=rf"{p}:2: field 'id': duplicate id 'a' \(first at {p}:1\)"):
        load_jsonl(p, DataConfig(source="jsonl"))
    with pytest.raises(DataError, match="no records"):
        load_jsonl(_write(tmp_path, [""], "empty.jsonl"), DataConfig(source="jsonl"))
    with pytest.raises(DataError, match="no such file"):
        load_jsonl(tmp_path / "missing.jsonl", DataConfig(source="jsonl"))


def test_jsonl_split_is_disjoint_and_seeded(tmp_path: Path) -> None:
    p = _write(tmp_path, [json.dumps({"prompt": f"q{i}", "answer": str(i)}) for i in range(20)])
    cfg = DataConfig(source="jsonl", path=str(p), eval_size=5, seed=3)
    stream, held = build_tasks(cfg)
    assert len(stream) == 15 and len(held) == 5
    assert not {t.id for t in stream.tasks} & {t.id for t in held}
    _, held_again = build_tasks(cfg)
    assert [t.id for t in held] == [t.id for t in held_again]
    with pytest.raises(DataError, match="eval_size=20 leaves no training tasks"):
        build_tasks(cfg.model_copy(update={"eval_size": 20}))


def test_separate_eval_file(tmp_path: Path) -> None:
    train = _write(tmp_path, [json.dumps({"prompt": f"q{i}"}) for i in range(4)], "train.jsonl")
    ev = _write(tmp_path, [json.dumps({"prompt": "e"})], "eval.jsonl")
    stream, held = build_tasks(DataConfig(source="jsonl", path=str(train), eval_path=str(ev)))
    assert len(stream) == 4 and [t.messages[-1]["content"] for t in held] == ["e"]


def test_example_data_files_load() -> None:
    files = sorted(EXAMPLES.glob("*.jsonl"))
    assert files
    for f in files:
        assert load_jsonl(f, DataConfig(source="jsonl"))


def test_hf_dataset_from_disk_and_field_map(tmp_path: Path) -> None:
    import datasets

    rows = [{"question": f"What is {i}+1?", "solution": str(i + 1)} for i in range(6)]
    datasets.Dataset.from_list(rows).save_to_disk(str(tmp_path / "ds"))
    cfg = DataConfig(source="hf", path=str(tmp_path / "ds"), eval_size=2, field_map={"solution": "answer"})
    stream, held = build_tasks(cfg)
    assert len(stream) == 4 and len(held) == 2
    t = stream.tasks[0]
    assert t.messages == [{"role": "user", "content": "What is 0+1?"}] and t.fields == {"answer": "1"}
    datasets.Dataset.from_list([{"text": "no prompt column"}]).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(DataError, match=r"bad\[train\]#0: field 'messages' or 'prompt'"):
        build_tasks(DataConfig(source="hf", path=str(tmp_path / "bad"), eval_size=0))


def test_addition_task() -> None:
    tasks = addition_tasks(50, seed=1)
    assert len({t.id for t in tasks}) == 50
    for t in tasks:
        a, b = (int(x) for x in t.id.split("-")[1:])
        assert 10 <= a <= 99 and 10 <= b <= 99
        assert t.messages == [{"role": "user", "content": ADDITION_PROMPT.format(a=a, b=b)}]
        assert t.fields == {"answer": str(a + b)}
    stream, held = build_tasks(DataConfig(source="addition", size=100, eval_size=20))
    assert len(stream) == 100 and len(held) == 20
    assert not {t.id for t in stream.tasks} & {t.id for t in held}


def test_reasoning_gym_source_is_seeded_and_gradable() -> None:
    cfg = DataConfig(source="reasoning_gym", name="basic_arithmetic", size=40, eval_size=10, seed=7)
    stream, held = build_tasks(cfg)
    stream2, held2 = build_tasks(cfg)
    assert [t.messages for t in stream.tasks] == [t.messages for t in stream2.tasks]
    assert [t.messages for t in held] == [t.messages for t in held2]
    assert len(held) == 10 and 30 <= len(stream) <= 40
    train_q = {t.messages[-1]["content"] for t in stream.tasks}
    assert not train_q & {t.messages[-1]["content"] for t in held}
    assert all(isinstance(t.fields["answer"], str) and t.fields["answer"] for t in held)
    # what the strict scorer (the reasoning_gym grader: score_answer(answer, entry)) reads, as plain JSON
    assert all(t.fields["dataset"] == "basic_arithmetic" and t.fields["entry"]["answer"] == t.fields["answer"]
               and json.loads(json.dumps(t.fields["entry"])) == t.fields["entry"] for t in held)  # fmt: skip
    with pytest.raises(DataError, match=r"data\.name"):
        build_tasks(DataConfig(source="reasoning_gym"))
    with pytest.raises(DataError, match="no_such_generator"):
        build_tasks(DataConfig(source="reasoning_gym", name="no_such_generator"))


def test_humaneval_tasks_carry_tests_and_entry_point() -> None:
    stream, held = build_tasks(DataConfig(source="humaneval", eval_size=14))
    assert len(stream) + len(held) == 164
    t = next(t for t in stream.tasks + held if t.id == "HumanEval/0")
    assert t.fields["entry_point"] == "has_close_elements"
    assert "def check(candidate)" in t.fields["tests"]
    assert t.fields["prefix"].startswith("from typing import List")
    assert "def has_close_elements" in t.messages[-1]["content"]


# --------------------------------------------------------------------------------------------- cursor


def _tasks(n: int) -> list[Task]:
    return [Task(id=f"t{i}", messages=[{"role": "user", "content": str(i)}]) for i in range(n)]


def test_stream_visits_every_task_once_per_epoch_and_reshuffles() -> None:
    s = TaskStream(_tasks(7), seed=1)
    e0 = [t.id for t in s.take(7)]
    e1 = [t.id for t in s.take(7)]
    assert sorted(e0) == sorted(e1) == sorted(t.id for t in _tasks(7))
    assert e0 != e1
    assert s.epoch == 1
    assert [t.id for t in TaskStream(_tasks(7), seed=1, shuffle=False).take(3)] == ["t0", "t1", "t2"]


def test_stream_resume_neither_repeats_nor_skips() -> None:
    ref = TaskStream(_tasks(5), seed=9)
    expected = [t.id for t in ref.take(23)]
    s = TaskStream(_tasks(5), seed=9)
    got = [t.id for t in s.take(8)]
    state = json.loads(json.dumps(s.state_dict()))  # survives the JSON round trip of a checkpoint
    resumed = TaskStream(_tasks(5), seed=9)
    resumed.load_state_dict(state)
    got += [t.id for t in resumed.take(15)]
    assert got == expected


def test_stream_refuses_a_cursor_from_other_data() -> None:
    s = TaskStream(_tasks(5), seed=9)
    s.take(2)
    with pytest.raises(DataError, match="different data"):
        TaskStream(_tasks(6), seed=9).load_state_dict(s.state_dict())
    with pytest.raises(DataError, match="different data"):
        TaskStream(_tasks(5), seed=10).load_state_dict(s.state_dict())


def test_task_dict_round_trip() -> None:
    t = Task(id="x", messages=[{"role": "user", "content": "q"}], fields={"answer": "1"}, source="f:1")
    assert Task.from_dict(json.loads(json.dumps(t.to_dict()))) == t


def test_template_wraps_the_question_even_with_other_braces(tmp_path: Path) -> None:
    p = _write(tmp_path, [json.dumps({"question": "2+{x}?", "answer": "4"})])
    cfg = DataConfig(source="jsonl", template='Q: {question} Reply as {"answer": n}.')
    (task,) = load_jsonl(p, cfg)
    assert task.messages == [{"role": "user", "content": 'Q: 2+{x}? Reply as {"answer": n}.'}]
    assert task.fields == {"answer": "4"}
