"""A SavedModel's graph read as a proto, before anything of it is loaded or run.

``tf.saved_model.load``, the TFLite converter and Keras' SavedModel loader all run graph ops
while loading: a TF1 ``main_op``/``init_op``, a TF2 resource's initializer, table initializers.
``graph_ops`` lists every op of the graph and of its function library straight from
``saved_model.pb`` (protobuf parsing only: nothing is imported into a graph, nothing runs), so
``check`` can refuse ops that touch files, processes or the network first.

Private API, isolated here: ``tensorflow.python.framework.op_def_registry.get`` (whether an op
name is registered in this TensorFlow; checked against TensorFlow 2.21). The protos
(``tensorflow.core.protobuf.saved_model_pb2``) are TensorFlow's published message definitions.
"""

import os
from typing import Iterator, NamedTuple

CHECKED_TENSORFLOW = "2.21"

# Ops that read, write, list or map files, run Python or shell code, talk to other processes or
# hosts, or write to streams. Kept complete against TensorFlow's op registry by
# tests/test_untrusted_files.py (every registered op whose name looks like one of these kinds is
# either here or reviewed as harmless there).
FILE_OPS = frozenset({
    "ReadFile", "WriteFile", "MatchingFiles", "ImmutableConst", "FileSystemSetConfiguration",
    "InitializeTableFromTextFile", "InitializeTableFromTextFileV2", "LoadAndRemapMatrix",
    "GenerateVocabRemapping", "RecordInput", "DecodeProtoV2", "EncodeProto",
    "FixedLengthRecordReader", "FixedLengthRecordReaderV2", "IdentityReader", "IdentityReaderV2",
    "LMDBReader", "TFRecordReader", "TFRecordReaderV2", "TextLineReader", "TextLineReaderV2",
    "WholeFileReader", "WholeFileReaderV2", "ReaderNumRecordsProduced",
    "ReaderNumRecordsProducedV2", "ReaderNumWorkUnitsCompleted", "ReaderNumWorkUnitsCompletedV2",
    "ReaderRead", "ReaderReadUpTo", "ReaderReadUpToV2", "ReaderReadV2", "ReaderReset",
    "ReaderResetV2", "ReaderRestoreState", "ReaderRestoreStateV2", "ReaderSerializeState",
    "ReaderSerializeStateV2",
    # summaries, printing and debugging write to files or streams
    "Print", "PrintV2", "AudioSummary", "AudioSummaryV2", "HistogramSummary", "ImageSummary",
    "MergeSummary", "ScalarSummary", "TensorSummary", "TensorSummaryV2", "SummaryWriter",
    "CreateSummaryDbWriter", "CreateSummaryFileWriter", "CloseSummaryWriter",
    "FlushSummaryWriter", "WriteAudioSummary", "WriteGraphSummary", "WriteHistogramSummary",
    "WriteImageSummary", "WriteRawProtoSummary", "WriteScalarSummary", "WriteSummary",
    "StatsAggregatorSetSummaryWriter", "StatsAggregatorSummary",
    "ExperimentalStatsAggregatorSummary", "DebugIdentity", "DebugIdentityV2", "DebugIdentityV3",
    "DebugNanCount", "DebugNumericSummary", "DebugNumericSummaryV2", "DebugGradientIdentity",
    "DebugGradientRefIdentity",
})
PROCESS_OPS = frozenset({"PyFunc", "PyFuncStateless", "EagerPyFunc"})
NETWORK_OPS = frozenset({
    "Send", "Recv", "_Send", "_Recv", "_HostSend", "_HostRecv", "RemoteCall",
    "CollectiveAllToAllV2", "CollectiveAllToAllV3", "CollectiveAssignGroupV2",
    "CollectiveBcastRecv", "CollectiveBcastRecvV2", "CollectiveBcastSend", "CollectiveBcastSendV2",
    "CollectiveGather", "CollectiveGatherV2", "CollectiveInitializeCommunicator",
    "CollectivePermute", "CollectiveReduce", "CollectiveReduceScatterV2", "CollectiveReduceV2",
    "CollectiveReduceV3", "ConfigureDistributedTPU", "ShutdownDistributedTPU", "DistributedSave",
    "InfeedDequeue", "InfeedDequeueTuple", "InfeedEnqueue", "InfeedEnqueuePrelinearizedBuffer",
    "InfeedEnqueueTuple", "OutfeedDequeue", "OutfeedDequeueTuple", "OutfeedDequeueTupleV2",
    "OutfeedDequeueV2", "OutfeedEnqueue", "OutfeedEnqueueTuple", "RecvTPUEmbeddingActivations",
    "SendTPUEmbeddingGradients",
})
# Checkpoint ops: every SavedModel's saver holds them (its variables are restored from
# ``variables/``); anywhere else they write or read arbitrary paths.
CHECKPOINT_OPS = frozenset({"Save", "SaveV2", "SaveSlices", "Restore", "RestoreV2",
                            "RestoreSlice", "MergeV2Checkpoints"})


def _dataset_op(op: str) -> bool:
    """tf.data ops read files (TFRecord, text, CSV, SQL, LMDB, snapshots, caches) or run
    functions over them; an inference graph being converted holds none."""
    return "Dataset" in op or "Iterator" in op


def denied_kind(op: str) -> str:
    """What a denied op touches (``files``, ``processes``, ``the network``, ``data
    pipelines``, ``checkpoints``), or "" for an op that may run."""
    if op in FILE_OPS:
        return "files"
    if op in PROCESS_OPS:
        return "Python or processes"
    if op in NETWORK_OPS:
        return "other processes or hosts"
    if _dataset_op(op):
        return "files (a data pipeline)"
    if op in CHECKPOINT_OPS:
        return "checkpoint files outside the saver"
    return ""


class Op(NamedTuple):
    """One op of a SavedModel: its type, its node name and where it sits."""

    op: str
    node: str
    where: str  # "the graph" or "function NAME"
    in_saver: bool  # the saver's own save/restore (checkpoint ops allowed there)


def registered(op: str) -> bool:
    """Whether ``op`` is an op this TensorFlow knows (not a custom op from a shared library)."""
    from tensorflow.python.framework import op_def_registry

    return op_def_registry.get(op) is not None


def read(path: str):
    """The ``SavedModel`` proto of a SavedModel directory (parsed, nothing loaded).

    Raises:
        ValueError: the file is not a SavedModel proto.
    """
    from google.protobuf.message import DecodeError
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(path, "saved_model.pb"), "rb") as f:
        try:
            proto.ParseFromString(f.read())
        except (DecodeError, RuntimeError) as e:
            raise ValueError(f"saved_model.pb is not a SavedModel proto ({e})") from e
    return proto


def _called(node) -> Iterator[str]:
    """Names of the functions a NodeDef calls: its op (a direct call) and function attrs
    (nested ones too)."""
    yield node.op
    yield from _attr_functions(node.attr.values())


def _attr_functions(values) -> Iterator[str]:
    for value in values:
        fns = ([value.func] if value.HasField("func") else []) + list(value.list.func)
        for fn in fns:
            yield fn.name
            yield from _attr_functions(fn.attr.values())


# Collections whose ops a TF1 loader runs (the saver's restore aside) and signature outputs a
# conversion runs: none of them may reach the saver's checkpoint ops.
_RUN_COLLECTIONS = ("saved_model_main_op", "main_op", "legacy_init_op", "init_op",
                    "table_initializer", "saved_model_train_op")


def loader_reaches_checkpoint(meta) -> Iterator[Op]:
    """Checkpoint ops of the graph that a loader-run op or a signature output depends on."""
    nodes = {n.name: n for n in meta.graph_def.node}
    roots = [v for key in _RUN_COLLECTIONS if key in meta.collection_def
             for v in meta.collection_def[key].node_list.value]
    roots += [t.name for sig in meta.signature_def.values() for t in sig.outputs.values()]
    seen, todo = set(), [r.lstrip("^").split(":")[0] for r in roots]
    while todo:
        name = todo.pop()
        if name in seen or name not in nodes:
            continue
        seen.add(name)
        node = nodes[name]
        if node.op in CHECKPOINT_OPS:
            yield Op(node.op, node.name, "the graph", False)
        todo.extend(i.lstrip("^").split(":")[0] for i in node.input)


def graph_ops(proto) -> Iterator[Op]:
    """Every op of every meta graph: graph nodes, then every library function's nodes.

    A function counts as the saver's only when nothing but the saver's nodes reaches it
    (TF1: the nodes under the saver's name scope; TF2: the nodes ``saver_def`` names).
    """
    for meta in proto.meta_graphs:
        graph, saver = meta.graph_def, meta.saver_def
        names = {n.split(":")[0].lstrip("^") for n in (
            saver.filename_tensor_name, saver.save_tensor_name, saver.restore_op_name) if n}
        scopes = {n.rsplit("/", 1)[0] + "/" for n in names if "/" in n}
        library = {f.signature.name: f for f in graph.library.function}

        def saver_node(name: str) -> bool:
            return name in names or any(name.startswith(s) for s in scopes)

        def reach(roots) -> set:
            seen, todo = set(), [r for r in roots if r in library]
            while todo:
                fn = todo.pop()
                if fn in seen:
                    continue
                seen.add(fn)
                todo.extend(c for n in library[fn].node_def for c in _called(n) if c in library)
            return seen

        from_saver = reach(c for n in graph.node if saver_node(n.name) for c in _called(n))
        others = [c for n in graph.node if not saver_node(n.name) for c in _called(n)]
        from_others = reach(others + [f for f in library if f not in from_saver])
        yield from loader_reaches_checkpoint(meta)
        for node in graph.node:
            yield Op(node.op, node.name, "the graph", saver_node(node.name))
        for name, fn in library.items():
            only_saver = name in from_saver and name not in from_others
            for node in fn.node_def:
                yield Op(node.op, node.name, f"function {name!r}", only_saver)


def library_names(proto) -> set:
    """Names of the functions in every meta graph's library (calls, not ops)."""
    return {f.signature.name for meta in proto.meta_graphs
            for f in meta.graph_def.library.function}
