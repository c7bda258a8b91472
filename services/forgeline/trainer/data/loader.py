"""Loading a dataset: every record of every file read, its format settled, and validated.

All problems are reported together, up to `MAX_PROBLEMS`, each naming the file, the line
(or row) and the field.
"""

from __future__ import annotations

from pathlib import Path

from forgeline.trainer.config import FORMATS_FOR_TASK, DataFormat, Task
from forgeline.trainer.data.formats import FIELDS_HINT, detect_format, parse_record
from forgeline.trainer.data.readers import SUFFIXES, dataset_files, read_records
from forgeline.trainer.data.records import Dataset, ProblemSink


def load_dataset(
    path: Path,
    task: Task,
    fmt: DataFormat = DataFormat.AUTO,
    *,
    label: str | None = None,
    limit: int | None = None,
) -> Dataset:
    """Reads and validates every record of a dataset file or folder.

    Args:
        path: A data file, or a folder of them (a pulled DATASET version).
        task: What the data will train; decides which formats are acceptable.
        fmt: The records' format; AUTO detects it from the first record.
        label: Name used for the file in problems (default: the file's name).
        limit: Stop after this many records (for quick inspection).

    Returns:
        The dataset with its examples and every problem found (up to `MAX_PROBLEMS`).
    """
    dataset = Dataset(format=fmt)
    sink = ProblemSink(dataset)
    files = dataset_files(path)
    if not files:
        sink.add(label or Path(path).name, 0, "", f"no data file ({', '.join(SUFFIXES)}) found")
        return dataset
    allowed = FORMATS_FOR_TASK[task]
    for file in files:
        name = label if (label and len(files) == 1) else file.name
        for line, record in read_records(file, name, sink):
            if limit is not None and dataset.records >= limit:
                return dataset
            dataset.records += 1
            if not isinstance(record, dict):
                sink.add(
                    name, line, "", f"a record must be a JSON object, got {type(record).__name__}"
                )
                continue
            if dataset.format is DataFormat.AUTO:
                detected = detect_format(record)
                if detected is None:
                    hints = "; ".join(f"{f.name}: {FIELDS_HINT[f]}" for f in sorted(allowed))
                    sink.add(
                        name,
                        line,
                        "",
                        f"cannot tell the format from fields {sorted(record)}; "
                        f"for {task.name} give one of {hints}",
                    )
                    return dataset
                if detected not in allowed:
                    expected = " or ".join(FIELDS_HINT[f] for f in sorted(allowed))
                    sink.add(
                        name,
                        line,
                        "",
                        f"records are {detected.name} ({FIELDS_HINT[detected]}), which cannot "
                        f"train {task.name}; it needs {expected}",
                    )
                    return dataset
                dataset.format = detected
            example = parse_record(dataset.format, record, name, line, sink)
            if example is not None:
                dataset.examples.append(example)
    if dataset.records == 0:
        sink.add(label or files[0].name, 0, "", "the dataset has no records")
    return dataset
