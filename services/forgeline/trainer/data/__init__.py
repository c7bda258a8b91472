"""Training data: reading files, detecting and validating record formats, and tokenizing.

Datasets are JSON Lines, JSON arrays, CSV or Parquet files (`readers`). Each record is
checked against its format, detected from the first record's fields unless given
(`formats`), and turned into one of three canonical forms (`records`): a chat
`Conversation`, a plain `Text`, or a `Preference` pair. `load_dataset` (`loader`) does all
of it and reports every problem together, each naming the file, the line (or row) and the
field, up to `MAX_PROBLEMS`.

Tokenizing (`tokenizing`) renders conversations with the tokenizer's own chat template and
masks every token that is not part of an assistant turn, so SFT puts its loss on the
answers only; `packing` fills rows of `max_length` tokens with several sequences.
"""

from forgeline.trainer.data.formats import detect_format
from forgeline.trainer.data.loader import load_dataset
from forgeline.trainer.data.packing import pack
from forgeline.trainer.data.readers import SUFFIXES, dataset_files
from forgeline.trainer.data.records import (
    MAX_PROBLEMS,
    Conversation,
    Dataset,
    Example,
    Preference,
    Problem,
    ProblemSink,
    Text,
)
from forgeline.trainer.data.tokenizing import (
    DEFAULT_CHAT_TEMPLATE,
    IGNORE_INDEX,
    Tokenized,
    TokenizedPair,
    assistant_spans,
    count_tokens,
    ensure_chat_template,
    row_length,
    tokenize_conversation,
    tokenize_dataset,
    tokenize_preference,
    tokenize_text,
)

__all__ = [
    "DEFAULT_CHAT_TEMPLATE",
    "IGNORE_INDEX",
    "MAX_PROBLEMS",
    "SUFFIXES",
    "Conversation",
    "Dataset",
    "Example",
    "Preference",
    "Problem",
    "ProblemSink",
    "Text",
    "Tokenized",
    "TokenizedPair",
    "assistant_spans",
    "count_tokens",
    "dataset_files",
    "detect_format",
    "ensure_chat_template",
    "load_dataset",
    "pack",
    "row_length",
    "tokenize_conversation",
    "tokenize_dataset",
    "tokenize_preference",
    "tokenize_text",
]
