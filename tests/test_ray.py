"""kosenttype-predict --engine ray on a real local Ray instance (3 logical CPUs: 2 workers + reading and writing).

Every Ray job here is compared with the local engine run on the same input, record for record; the instance is
shared by the module's tests and always shut down.
"""

from __future__ import annotations

import csv
import ipaddress
import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import KOREAN_SENTENCES

from kosenttype.engine import EngineSettings, load_classifier
from kosenttype.errors import KoSentTypeError
from kosenttype.input_files import InputFile, expand_inputs, read_input_file
from kosenttype.predict import main
from kosenttype.readers import read_parquet_records
from kosenttype.records import InputRecord, LineError, Prediction

ray_engine = pytest.importorskip("kosenttype.ray_engine")
ray = pytest.importorskip("ray")

WORKERS = ["--engine", "ray", "--num_workers", "2", "--threads_per_worker", "1"]
COMMON = ["--precision", "fp32", "--max_line_bytes", "2000"]


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray instance for the module: 2 one-thread workers and a CPU's worth for reading and writing."""
    ray_engine.start_local_ray(num_cpus=3)
    try:
        yield
    finally:
        ray.shutdown()


def sentence(index: int) -> str:
    """Sentences of varied lengths, so that length sorting moves them within each chunk."""
    first, second = KOREAN_SENTENCES[index % len(KOREAN_SENTENCES)], KOREAN_SENTENCES[(index * 7) % 13]
    return " ".join([first] + [second] * (index % 4))


def hostile_jsonl(count: int) -> bytes:
    """`count` JSON lines: ids of three kinds (strings, numbers, absent) and one bad line in about twenty."""
    bad_lines = [
        b"",
        b"{not json",
        b"[1, 2]",
        b'{"id": "no-text", "title": "x"}',
        b'{"id": "blank", "text": "   "}',
        b'{"id": "nan", "text": NaN}',
        '{"id": "bad-utf8", "text": "깨진 '.encode() + b"\xff\xfe" + b'"}',
        b'{"id": "huge", "text": "' + "가".encode() * 1000 + b'"}',  # 3,000 bytes > --max_line_bytes 2000
    ]
    lines = []
    for index in range(count):
        if index % 20 == 7:
            lines.append(bad_lines[(index // 20) % len(bad_lines)])
            continue
        record = {"text": sentence(index)}
        if index % 3 == 0:
            record["id"] = f"doc-{index}"
        elif index % 3 == 1:
            record["id"] = index * 10
        lines.append(json.dumps(record, ensure_ascii=False).encode())
    return b"\n".join(lines) + b"\n"


def run_both(tmp_path: Path, model: Path, source: Path, *options: str) -> tuple[int, bytes, int, bytes]:
    """(status, output) of the local engine, then of the Ray engine, on the same input and options."""
    local, distributed = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    base = ["--model", str(model), "--input", str(source), *COMMON, *options]
    local_status = main([*base, "--output", str(local)])
    ray_status = main([*base, "--output", str(distributed), *WORKERS])
    return local_status, local.read_bytes(), ray_status, distributed.read_bytes()


def test_single_output_is_the_local_engines_byte_for_byte_in_input_order(tmp_path, tiny_model_dir, local_ray):
    source = tmp_path / "input.jsonl"
    source.write_bytes(hostile_jsonl(2000))
    local_status, expected, ray_status, output = run_both(
        tmp_path, tiny_model_dir, source, "--chunk_size", "100", "--top_k", "2"
    )
    records = [json.loads(line) for line in output.decode().splitlines()]
    errors = [record["error"] for record in records if "error" in record]
    assert len(records) == 2000 and len(errors) == 100  # every line, one bad line in twenty
    for kind in ("empty line", "not valid JSON", "expected a JSON object", "no 'sentence'", "empty sentence"):
        assert any(kind in error for error in errors), kind
    for kind in ("NaN is not JSON", "not valid UTF-8 (byte 0xff", "longer than 2000 bytes"):
        assert any(kind in error for error in errors), kind
    good_ids = [f"doc-{i}" if i % 3 == 0 else i * 10 if i % 3 == 1 else i + 1 for i in range(2000) if i % 20 != 7]
    assert [record["id"] for record in records if "error" not in record] == good_ids
    assert (ray_status, output) == (local_status, expected)
    assert ray_status == 1


def test_folder_of_txt_csv_and_parquet_to_parquet_shards(tmp_path, tiny_model_dir, local_ray):
    inputs = tmp_path / "corpus"
    (inputs / "b").mkdir(parents=True)
    (inputs / "a.txt").write_text("\n".join(sentence(i) if i % 25 else "" for i in range(300)) + "\n", "utf-8")
    with (inputs / "b" / "c.csv").open("w", encoding="utf-8", newline="") as stream:
        csv.writer(stream).writerows([["id", "sentence"]] + [[f"row-{i}", sentence(i)] for i in range(200)])
    texts = [sentence(i) if i % 50 else None for i in range(250)]
    pq.write_table(pa.table({"id": list(range(250)), "text": texts}), inputs / "b" / "d.parquet")
    for skipped in (".hidden.txt", "_SUCCESS", "notes.md"):
        (inputs / skipped).write_text("건너뛴다.\n", "utf-8")
    output = tmp_path / "shards"
    argv = ["--model", str(tiny_model_dir), "--input", str(inputs), "--output", f"{output}/", *COMMON, *WORKERS]
    assert main([*argv, "--chunk_size", "64"]) == 1  # the blank lines and null texts are error records

    shards = sorted(output.iterdir())
    assert [shard.suffix for shard in shards] == [".parquet"] * len(shards)
    assert len(shards) == 5 + 4 + 4  # ceil(300/64) + ceil(200/64) + ceil(250/64): one shard per block
    written = pa.concat_tables([pq.read_table(shard) for shard in shards]).to_pylist()
    classifier = load_classifier(tiny_model_dir, device="cpu", precision="fp32")
    expected = []
    for path in (inputs / "a.txt", inputs / "b" / "c.csv", inputs / "b" / "d.parquet"):
        records = read_input_file(InputFile(str(path), path.suffix.lstrip(".")))
        predictions = classifier.classify_records(records, EngineSettings(chunk_size=64))
        for position, prediction in enumerate(predictions, start=1):
            record = prediction.to_record(with_top_k=False)
            record_id = record["id"] if isinstance(record["id"], str) else json.dumps(record["id"])
            error = record.get("error")
            expected.append(
                {**record, "id": record_id, "error": error, "input_file": str(path), "input_record": position}
            )
    assert written == expected


def model_workers() -> list[int]:
    """The process ids of the live Ray actors holding the model (Ray titles them MapWorker(…BlockClassifier))."""
    found = []
    for process in psutil.Process().children(recursive=True):
        try:
            if "BlockClassifier" in " ".join(process.cmdline()) and process.status() != psutil.STATUS_ZOMBIE:
                found.append(process.pid)
        except psutil.Error:  # a process of an earlier job, gone or a zombie by now
            continue
    return found


def test_a_killed_worker_is_retried_and_every_record_written_once(tmp_path, tiny_model_dir, local_ray):
    source = tmp_path / "input.txt"
    source.write_text("\n".join(sentence(i) for i in range(4000)) + "\n", "utf-8")
    local, distributed = tmp_path / "local.jsonl", tmp_path / "ray.jsonl"
    base = ["--model", str(tiny_model_dir), "--input", str(source), *COMMON, "--chunk_size", "40"]
    assert main([*base, "--output", str(local)]) == 0
    killed: dict[str, object] = {}
    run_over = threading.Event()

    def kill_a_worker_once_output_flows() -> None:
        """SIGKILL one model worker as soon as the first records reach the (still temporary) output file; stop
        looking once the run is over."""
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed and not run_over.wait(0.02):
            partial = [path for path in tmp_path.glob(".ray.jsonl.*.tmp") if path.stat().st_size > 0]
            workers = model_workers()
            if partial and workers:
                os.kill(workers[0], signal.SIGKILL)
                killed.update(pid=workers[0], finished_before=distributed.exists())

    killer = threading.Thread(target=kill_a_worker_once_output_flows, daemon=True)
    killer.start()
    try:
        status = main([*base, "--output", str(distributed), *WORKERS])
    finally:
        run_over.set()
        killer.join(timeout=5)
    assert not killer.is_alive()
    assert killed.get("finished_before") is False  # the worker died mid-run
    assert status == 0
    assert distributed.read_bytes() == local.read_bytes()  # every record once, in order, identical


def test_a_bad_input_inside_a_ray_task_is_one_line(tmp_path, tiny_model_dir, local_ray, capsys):
    source = tmp_path / "table.csv"
    source.write_text("id,title\n1,제목\n", "utf-8")
    output = tmp_path / "out.jsonl"
    status = main(["--model", str(tiny_model_dir), "--input", str(source), "--output", str(output), *WORKERS])
    last_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert status == 2
    assert last_line == (
        f"kosenttype-predict: error: {source}: the CSV header has no 'sentence' / 'text' / '문장' column "
        "(columns: id, title)"
    )
    assert not output.exists() and not list(tmp_path.glob(".out.jsonl.*"))


def test_a_local_instance_listens_on_loopback_only(local_ray):
    ours = {process.pid for process in psutil.Process().children(recursive=True)}
    listening = [
        connection
        for connection in psutil.net_connections(kind="inet")
        if connection.status == psutil.CONN_LISTEN and connection.pid in ours
    ]
    assert listening  # the GCS, the raylet, the object manager and the workers
    addresses = {ipaddress.ip_address(connection.laddr.ip) for connection in listening}
    assert all((getattr(address, "ipv4_mapped", None) or address).is_loopback for address in addresses), addresses


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.mark.parametrize("scheme", ["ray://", ""])
def test_an_unreachable_address_is_one_line_within_a_minute(tmp_path, tiny_model_dir, scheme, capsys):
    source = tmp_path / "input.txt"
    source.write_text("문장 하나.\n", "utf-8")
    address = f"{scheme}127.0.0.1:{closed_port()}"
    started = time.monotonic()
    argv = ["--model", str(tiny_model_dir), "--input", str(source), "--output", str(tmp_path / "out.jsonl")]
    status = main([*argv, "--engine", "ray", "--ray_address", address])
    stderr = capsys.readouterr().err
    assert status == 2 and time.monotonic() - started < 60
    assert stderr.startswith(f"kosenttype-predict: error: cannot reach the Ray cluster at {address}: ")
    assert stderr.count("\n") == 1
    assert not (tmp_path / "out.jsonl").exists()


@pytest.mark.parametrize(
    ("input_name", "message"),
    [
        ("missing.txt", "input file not found: {path}"),
        ("nothing-*.jsonl", "no files match {path}"),
        ("empty_folder", "no input files in folder {path} (looked for .txt, .jsonl, .ndjson, .csv, .parquet, .pq)"),
        ("-", "--engine ray reads files, folders or globs, not standard input; use a file"),
    ],
)
def test_inputs_that_are_not_there_are_one_line_before_ray_starts(
    tmp_path, tiny_model_dir, input_name, message, capsys
):
    (tmp_path / "empty_folder").mkdir()
    path = input_name if input_name == "-" else str(tmp_path / input_name)
    started = time.monotonic()
    status = main(["--model", str(tiny_model_dir), "--input", path, "--output", str(tmp_path / "o.jsonl"), *WORKERS])
    assert status == 2 and time.monotonic() - started < 10
    assert capsys.readouterr().err == f"kosenttype-predict: error: {message.format(path=path)}\n"


@pytest.mark.parametrize(
    ("output", "options", "message"),
    [
        (
            "out.parquet",
            ["--output_format", "parquet"],
            "--output_format parquet needs an output folder (end it with /)",
        ),
        ("shards/", ["--output_format", "csv"], "--output_format csv: an output folder takes parquet or jsonl shards"),
        ("full/", [], "--output {tmp}/full/: the folder is not empty; choose a new or empty folder"),
        (
            "s3://bucket/out.jsonl",
            [],
            "--output s3://bucket/out.jsonl: give object storage a folder (ending with /) for shards",
        ),
        ("input.txt", [], "--output {tmp}/input.txt is also an input ({tmp}/input.txt); choose another output path"),
    ],
)
def test_outputs_refused_before_ray_starts(tmp_path, tiny_model_dir, output, options, message, capsys):
    source = tmp_path / "input.txt"
    source.write_text("문장 하나.\n", "utf-8")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "old.parquet").write_bytes(b"x")
    target = output if "://" in output else f"{tmp_path}/{output}"
    argv = ["--model", str(tiny_model_dir), "--input", str(source), "--output", target, *options, *WORKERS]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"kosenttype-predict: error: {message.format(tmp=tmp_path)}\n"
    assert source.read_text("utf-8") == "문장 하나.\n"


def test_a_missing_model_is_one_line_before_ray_starts(tmp_path, capsys):
    source = tmp_path / "input.txt"
    source.write_text("문장 하나.\n", "utf-8")
    model = tmp_path / "no_model"
    argv = ["--model", str(model), "--input", str(source), "--output", str(tmp_path / "o.jsonl"), *WORKERS]
    assert main(argv) == 2
    assert capsys.readouterr().err == f"kosenttype-predict: error: model folder not found: {model}\n"


def test_a_non_empty_folder_in_object_storage_is_refused(tmp_path, tiny_model_dir, capsys):
    source = tmp_path / "input.txt"
    source.write_text("문장 하나.\n", "utf-8")
    (tmp_path / "bucket" / "labels").mkdir(parents=True)
    (tmp_path / "bucket" / "labels" / "part-000000-000000000001.parquet").write_bytes(b"x")
    target = f"file://{tmp_path}/bucket/labels/"
    assert main(["--model", str(tiny_model_dir), "--input", str(source), "--output", target, *WORKERS]) == 2
    message = f"kosenttype-predict: error: --output {target}: the folder is not empty; choose a new or empty folder\n"
    assert capsys.readouterr().err == message


# --- the pieces, without Ray -------------------------------------------------------------------------------------


def test_blocks_carry_records_and_predictions_exactly():
    records = [
        InputRecord("doc-1", "문장."),
        InputRecord(7, error=LineError("empty", "line 7: empty sentence")),
        InputRecord(None, "또."),
    ]
    block = ray_engine.records_block(3, 41, records)
    assert ray_engine.block_records(block) == records
    assert block["position"].to_pylist() == [41, 42, 43]
    predictions = [
        Prediction(
            "doc-1", "사실형", 0.1 + 0.2, [("사실형", 0.1 + 0.2), ("추론형", 1 / 3)], {"tense": ("과거", 2 / 3)}
        ),
        Prediction(7, error=LineError("empty", "line 7: empty sentence")),
        Prediction(None, "대화형", 0.5, [("대화형", 0.5)]),
    ]
    rebuilt = list(ray_engine.block_predictions(ray_engine.predictions_block(block, predictions)))
    assert [key for key, _ in rebuilt] == [(3, 41), (3, 42), (3, 43)]
    assert [prediction for _, prediction in rebuilt] == predictions  # the floats bit for bit


def test_jsonl_shards_are_the_local_records_with_their_origin(tmp_path):
    block = ray_engine.predictions_block(
        ray_engine.records_block(0, 5, [InputRecord(5, "가."), InputRecord(6, error=LineError("empty", "line 6: e"))]),
        [
            Prediction(5, "사실형", 0.1234567, [("사실형", 0.1234567)]),
            Prediction(6, error=LineError("empty", "line 6: e")),
        ],
    )
    sink = ray_engine.ShardSink(str(tmp_path), "jsonl", ["in.txt"], with_top_k=False, with_attributes=False)
    counts = sink.write([block], ctx=None)
    assert (counts.classified, dict(counts.failures)) == (1, {"empty": 1})
    assert (tmp_path / "part-000000-000000000005.jsonl").read_text("utf-8").splitlines() == [
        '{"id": 5, "label": "사실형", "score": 0.123457, "input_file": "in.txt", "input_record": 5}',
        '{"id": 6, "label": null, "score": null, "error": "line 6: e", "input_file": "in.txt", "input_record": 6}',
    ]


def test_parquet_shards_in_object_storage_have_the_csv_columns(tmp_path):
    records = [InputRecord("a", "가."), InputRecord(9, "나."), InputRecord(3, error=LineError("empty", "line 3: e"))]
    predictions = [
        Prediction("a", "사실형", 0.1234567, [("사실형", 0.1234567), ("추론형", 0.5)], {"tense": ("과거", 0.25)}),
        Prediction(9, "대화형", 0.5, [("대화형", 0.5), ("사실형", 0.25)], {"tense": ("현재", 0.75)}),
        Prediction(3, error=LineError("empty", "line 3: e")),
    ]
    block = ray_engine.predictions_block(ray_engine.records_block(1, 3, records), predictions)
    sink = ray_engine.ShardSink(f"file://{tmp_path}/out/", "parquet", ["a.txt", "b.jsonl"], True, True)
    sink.on_write_start()
    sink.write([block], ctx=None)
    table = pq.read_table(tmp_path / "out" / "part-000001-000000000003.parquet")
    assert table.column_names == ["id", "label", "score", "top_k", "attributes", "error", "input_file", "input_record"]
    assert table.to_pylist()[1] == {
        "id": "9",
        "label": "대화형",
        "score": 0.5,
        "top_k": '[{"label": "대화형", "score": 0.5}, {"label": "사실형", "score": 0.25}]',
        "attributes": '{"tense": {"label": "현재", "score": 0.75}}',
        "error": None,
        "input_file": "b.jsonl",
        "input_record": 4,
    }
    assert table["score"].to_pylist() == [0.123457, 0.5, None]
    assert table["error"].to_pylist() == [None, None, "line 3: e"]


def test_folders_globs_and_uris_expand_in_sorted_order(tmp_path):
    for name in ("b/2.jsonl", "b/1.csv", "a.txt", "c.parquet", ".git/x.txt", "_tmp/y.txt", "b/.z.txt", "readme.md"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n", "utf-8")
    expected = [("a.txt", "txt"), ("b/1.csv", "csv"), ("b/2.jsonl", "jsonl"), ("c.parquet", "parquet")]
    assert expand_inputs(str(tmp_path)) == [InputFile(f"{tmp_path}/{name}", kind) for name, kind in expected]
    assert expand_inputs(f"file://{tmp_path}/") == [InputFile(f"file://{tmp_path}/{n}", k) for n, k in expected]
    assert expand_inputs(f"{tmp_path}/**/*.jsonl", "txt") == [InputFile(f"{tmp_path}/b/2.jsonl", "txt")]
    with pytest.raises(KoSentTypeError, match="input file not found"):
        expand_inputs(f"file://{tmp_path}/missing.txt")


def test_parquet_rows_become_records_like_csv_rows(tmp_path):
    path = tmp_path / "t.parquet"
    table = pa.table({"doc": [1.5, float("nan"), None], "문장": ["가나다.", None, "   "], "other": [1, 2, 3]})
    pq.write_table(table, path)
    with path.open("rb") as stream:
        records = list(read_parquet_records(stream, name="t.parquet", id_column="doc"))
    assert records == [
        InputRecord(1.5, "가나다."),
        InputRecord("nan", error=LineError("not_text", "row 2: the text is NoneType, not a string")),
        InputRecord(None, error=LineError("empty", "row 3: empty sentence")),
    ]
    with path.open("rb") as stream, pytest.raises(KoSentTypeError, match=r"t\.parquet: the Parquet schema has no"):
        list(read_parquet_records(stream, name="t.parquet", text_column="body"))


def test_parquet_shards_take_ids_with_undecodable_bytes_as_the_csv_output_does(tmp_path):
    """An id read with undecodable bytes holds a lone surrogate; the shard escapes it (as `\\udcff`), as the local
    engine's CSV output does, instead of failing to encode the whole shard."""
    records = [InputRecord("a\udcff", "가.")]
    predictions = [Prediction("a\udcff", "사실형", 0.5, [("사실형", 0.5)])]
    block = ray_engine.predictions_block(ray_engine.records_block(0, 1, records), predictions)
    sink = ray_engine.ShardSink(str(tmp_path), "parquet", ["in\udcfe.csv"], with_top_k=False, with_attributes=False)
    sink.write([block], ctx=None)
    row = pq.read_table(tmp_path / "part-000000-000000000001.parquet").to_pylist()[0]
    assert (row["id"], row["input_file"], row["label"]) == ("a\\udcff", "in\\udcfe.csv", "사실형")
