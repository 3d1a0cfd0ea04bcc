"""The MaaS public API as a Python grpcio user sees it.

Run by apps/gateway/test/python-conformance.test.ts, which starts the stack
(Redis, registry, two nodes, gateways A and B with API keys on), generates the
stubs from proto/ and writes MAAS_CONFORMANCE_CONFIG. Reference outputs were
computed by onnxruntime itself on the same inputs.
"""

import array
import base64
import hashlib
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time
import unittest
import urllib.request

import grpc

CONFIG = json.load(open(os.environ["MAAS_CONFORMANCE_CONFIG"]))
sys.path.insert(0, CONFIG["stubs"])

from maas.v1 import gateway_pb2, gateway_pb2_grpc, inference_pb2, registry_pb2, registry_pb2_grpc, tensor_pb2  # noqa: E402

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", ".."))
CHANNEL_OPTIONS = [("grpc.max_receive_message_length", -1), ("grpc.max_send_message_length", -1)]
ADMIN = (("authorization", "Bearer " + CONFIG["keys"]["admin"]),)
PREDICT = (("authorization", "Bearer " + CONFIG["keys"]["predict"]),)


def stubs(address):
    channel = grpc.insecure_channel(address, options=CHANNEL_OPTIONS)
    return channel, gateway_pb2_grpc.GatewayServiceStub(channel), registry_pb2_grpc.RegistryServiceStub(channel)


CH_A, GW_A, REG_A = stubs(CONFIG["gateway_a"])
CH_B, GW_B, REG_B = stubs(CONFIG["gateway_b"])
MODELS = CONFIG["models"]


def sha256_of(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def push(model, fixture, aliases=(), create=True):
    """Creates `model` (unless told not to) and uploads the fixture's artifact through gateway A."""
    if create:
        try:
            REG_A.CreateModel(registry_pb2.CreateModelRequest(name=model), metadata=ADMIN, timeout=10)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.ALREADY_EXISTS:
                raise
    path = MODELS[fixture]["path"]
    with open(path, "rb") as f:
        data = f.read()

    def messages():
        meta = registry_pb2.UploadMetadata(model=model, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), aliases=list(aliases))
        yield registry_pb2.UploadVersionRequest(metadata=meta)
        for i in range(0, len(data), 256 * 1024):
            yield registry_pb2.UploadVersionRequest(chunk=data[i : i + 256 * 1024])

    return REG_A.UploadVersion(messages(), metadata=ADMIN, timeout=60)


def metric(address, name):
    """The value of a metric with one series (its labels, if any, ignored) on a service's /metrics (Prometheus text), 0 when absent."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        for line in response.read().decode().splitlines():
            if re.match(re.escape(name) + r"(\{[^}]*\})? ", line):
                return float(line.rsplit(" ", 1)[1])
    return 0.0


def request_for(model, fixture, version=0, alias="", shape=None):
    given = MODELS[fixture]["input"]
    raw = base64.b64decode(given["data"])
    tensor = tensor_pb2.Tensor(name=given["name"], dtype=tensor_pb2.DATA_TYPE_FLOAT32, shape=shape if shape is not None else given["shape"], raw_data=raw)
    return inference_pb2.PredictRequest(model=model, version=version, alias=alias, inputs=[tensor])


def floats(raw):
    values = array.array("f")
    values.frombytes(raw)
    return values


class PublicApiTest(unittest.TestCase):
    def assertMatchesOnnxruntime(self, response, fixture):
        expected = MODELS[fixture]["expected"]
        got = {t.name: t for t in response.outputs}
        self.assertEqual(sorted(got), sorted(expected), "output names")
        for name, want in expected.items():
            self.assertEqual(list(got[name].shape), want["shape"], name)
            a, b = floats(got[name].raw_data), floats(base64.b64decode(want["data"]))
            self.assertEqual(len(a), len(b))
            worst = max((abs(x - y) for x, y in zip(a, b)), default=0.0)
            self.assertLessEqual(worst, 1e-5, f"{name}: largest difference from onnxruntime {worst}")

    def assertCode(self, call, code, *fragments):
        with self.assertRaises(grpc.RpcError) as caught:
            call()
        self.assertEqual(caught.exception.code(), code, caught.exception.details())
        for fragment in fragments:
            self.assertIn(fragment, caught.exception.details())
        return caught.exception.details()

    def loaded_on_nodes(self, model):
        nodes = GW_A.ListNodes(gateway_pb2.ListNodesRequest(), metadata=PREDICT, timeout=10).nodes
        return [(n.id, m.version, m.sha256) for n in nodes for m in n.loaded if m.model == model]

    # -- the basics -----------------------------------------------------------------------------

    def test_keys_are_required_and_scoped(self):
        self.assertCode(lambda: GW_A.ListModels(registry_pb2.ListModelsRequest(), timeout=10), grpc.StatusCode.UNAUTHENTICATED)
        self.assertCode(lambda: REG_A.CreateModel(registry_pb2.CreateModelRequest(name="nope"), metadata=PREDICT, timeout=10), grpc.StatusCode.PERMISSION_DENIED)

    def test_real_models_answer_as_onnxruntime_does_and_download_intact(self):
        for model, fixture in (("ocr-cls", "cls"), ("ocr-rec", "rec")):
            version = push(model, fixture, aliases=["production"])
            self.assertEqual(version.sha256, sha256_of(MODELS[fixture]["path"]))
            for gateway in (GW_A, GW_B):
                self.assertMatchesOnnxruntime(gateway.Predict(request_for(model, fixture), metadata=PREDICT, timeout=30), fixture)
            chunks = REG_A.DownloadVersion(registry_pb2.DownloadVersionRequest(model=model, version=version.version), metadata=PREDICT, timeout=30)
            body = b"".join(c.chunk for c in chunks if c.WhichOneof("payload") == "chunk")
            self.assertEqual(hashlib.sha256(body).hexdigest(), version.sha256)

    # -- 1. a deleted model's answers never come back -------------------------------------------

    def test_delete_and_recreate_answers_from_the_new_artifact(self):
        push("reborn", "mlp1", aliases=["production"])
        self.assertMatchesOnnxruntime(GW_A.Predict(request_for("reborn", "mlp1"), metadata=PREDICT, timeout=30), "mlp1")
        old = sha256_of(MODELS["mlp1"]["path"])
        REG_A.DeleteModel(registry_pb2.DeleteModelRequest(name="reborn"), metadata=ADMIN, timeout=10)
        # Same name, same version number, same signature, other weights.
        self.assertEqual(push("reborn", "mlp2", aliases=["production"]).version, 1)
        for _ in range(10):
            for gateway in (GW_A, GW_B):
                self.assertMatchesOnnxruntime(gateway.Predict(request_for("reborn", "mlp2"), metadata=PREDICT, timeout=30), "mlp2")
                self.assertMatchesOnnxruntime(gateway.Predict(request_for("reborn", "mlp2", version=1), metadata=PREDICT, timeout=30), "mlp2")
        self.assertNotIn(old, [sha for _, _, sha in self.loaded_on_nodes("reborn")])
        # And once more with another signature altogether.
        REG_A.DeleteModel(registry_pb2.DeleteModelRequest(name="reborn"), metadata=ADMIN, timeout=10)
        push("reborn", "cls", aliases=["production"])
        for gateway in (GW_A, GW_B):
            self.assertMatchesOnnxruntime(gateway.Predict(request_for("reborn", "cls"), metadata=PREDICT, timeout=30), "cls")

    # -- 2. deleted models are unloaded promptly ------------------------------------------------

    def test_deleted_model_leaves_every_node_promptly(self):
        push("doomed", "mlp1", aliases=["production"])
        for gateway in (GW_A, GW_B):
            gateway.Predict(request_for("doomed", "mlp1"), metadata=PREDICT, timeout=30)
        self.assertTrue(self.loaded_on_nodes("doomed"))
        started = time.monotonic()
        REG_A.DeleteModel(registry_pb2.DeleteModelRequest(name="doomed"), metadata=ADMIN, timeout=10)
        while self.loaded_on_nodes("doomed"):
            self.assertLess(time.monotonic() - started, 3.0, "a node still holds a deleted model 3 s after the delete")
            time.sleep(0.02)
        print(f"\n  deleted model unloaded from every node {1000 * (time.monotonic() - started):.0f} ms after DeleteModel returned", file=sys.stderr)

    # -- 4. an answer over the message limit ----------------------------------------------------

    def node_predicts(self, model):
        total = 0.0
        for node in CONFIG["nodes"]:
            text = urllib.request.urlopen(f"http://{node['metrics']}/metrics", timeout=5).read().decode()
            for line in text.splitlines():
                if line.startswith("maas_rpc_requests_total{") and 'method="Predict"' in line and f'model="{model}"' in line:
                    total += float(line.rsplit(" ", 1)[1])
        return total

    def test_answer_over_the_message_limit_is_resource_exhausted_and_not_retried(self):
        push("wide", "wide", aliases=["production"])
        self.assertMatchesOnnxruntime(GW_A.Predict(request_for("wide", "wide"), metadata=PREDICT, timeout=30), "wide")
        before = self.node_predicts("wide")
        limit = str(CONFIG["gateway_b_limit"])
        details = self.assertCode(lambda: GW_B.Predict(request_for("wide", "wide"), metadata=PREDICT, timeout=30), grpc.StatusCode.RESOURCE_EXHAUSTED, limit, "GATEWAY_MAX_MESSAGE_BYTES")
        size = int(re.search(r"is (\d+) bytes", details).group(1))
        self.assertGreater(size, CONFIG["gateway_b_limit"])
        self.assertEqual(self.node_predicts("wide") - before, 1, "the model ran more than once: a size failure was retried on another node")

    # -- 5. zero-size dimensions ----------------------------------------------------------------

    def test_zero_size_dimensions_are_invalid_argument(self):
        push("zeros", "cls", aliases=["production"])
        self.assertCode(lambda: GW_A.Predict(request_for("zeros", "cls", shape=[0, 3, 48, 192]), metadata=PREDICT, timeout=30), grpc.StatusCode.INVALID_ARGUMENT, "dimension 0")
        self.assertCode(lambda: GW_A.Predict(request_for("zeros", "cls", shape=[1, 3, 48, 0]), metadata=PREDICT, timeout=30), grpc.StatusCode.INVALID_ARGUMENT, "dimension 3")

    # -- 6. the CLI with an API key -------------------------------------------------------------

    def maas(self, *args, key_env=None):
        env = dict(os.environ)
        if key_env:
            env["MAAS_API_KEY"] = key_env
        run = subprocess.run(["node", os.path.join(REPO, "apps/cli/bin/maas.cjs"), "--gateway", CONFIG["gateway_a"], *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
        self.assertEqual(run.returncode, 0, run.stdout + run.stderr)
        return run.stdout

    def test_cli_uses_an_api_key_from_the_flag_and_the_environment(self):
        out = self.maas("--api-key", CONFIG["keys"]["admin"], "--json", "push", "by-cli", MODELS["mlp1"]["path"], "--alias", "production")
        self.assertIn(sha256_of(MODELS["mlp1"]["path"]), out)
        shown = json.loads(self.maas("--json", "models", "show", "by-cli", key_env=CONFIG["keys"]["predict"]))
        self.assertIn("by-cli", json.dumps(shown))

    # -- 7. documented limits are the served ones -----------------------------------------------

    def test_page_size_and_chunk_size_behave_as_the_proto_says(self):
        listed = REG_A.ListModels(registry_pb2.ListModelsRequest(page_size=5000), metadata=PREDICT, timeout=10)
        self.assertGreater(len(listed.models), 0)
        version = push("chunky", "mlp1")
        chunks = [c.chunk for c in REG_A.DownloadVersion(registry_pb2.DownloadVersionRequest(model="chunky", version=version.version, chunk_size=10), metadata=PREDICT, timeout=30) if c.WhichOneof("payload") == "chunk"]
        self.assertTrue(all(len(c) == 1024 for c in chunks[:-1]), [len(c) for c in chunks])
        self.assertEqual(hashlib.sha256(b"".join(chunks)).hexdigest(), version.sha256)

    # -- 8. one request id from gateway to node -------------------------------------------------

    def test_a_malformed_request_id_is_replaced_once_and_the_same_id_reaches_the_node(self):
        push("traced", "mlp1", aliases=["production"])
        GW_A.Predict(request_for("traced", "mlp1"), metadata=PREDICT + (("x-request-id", "not a valid id!"),), timeout=30)

        def find(path, predicate):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                with open(path) as f:
                    for line in f:
                        if line.startswith("{"):
                            entry = json.loads(line)
                            if predicate(entry):
                                return entry
                time.sleep(0.05)
            return None

        gateway_line = find(CONFIG["gateway_a_log"], lambda e: e.get("method") == "Predict" and e.get("model") == "traced" and e.get("msg") == "rpc")
        if gateway_line is None:
            with open(CONFIG["gateway_a_log"]) as f:
                seen = f.readlines()[-8:]
            self.fail("the gateway logged no Predict of the traced model; its last Predict lines:\n" + "".join(seen))
        rid = gateway_line["requestId"]
        self.assertRegex(rid, r"^[\w.:-]{1,128}$")
        node_lines = [find(n["log"], lambda e: e.get("requestId") == rid and e.get("method") == "Predict") for n in CONFIG["nodes"]]
        self.assertTrue(any(node_lines), f"no node logged request id {rid} that the gateway logged")

    def test_gateway_to_node_calls_move_to_node_frames_and_answer_the_same(self):
        # A relaying gateway sends a node's Predicts to its node-frames port once an HTTP/2 answer offered it:
        # the nodes count them, and every answer is the one HTTP/2 gave.
        push("framed", "mlp1", aliases=["production"])
        first = GW_B.Predict(request_for("framed", "mlp1"), metadata=PREDICT, timeout=30)
        before = sum(metric(n["metrics"], "maas_inference_frames_calls_total") for n in CONFIG["nodes"])
        for _ in range(20):
            answer = GW_B.Predict(request_for("framed", "mlp1"), metadata=PREDICT, timeout=30)
            self.assertEqual(answer.outputs[0].raw_data, first.outputs[0].raw_data)
        framed = sum(metric(n["metrics"], "maas_inference_frames_calls_total") for n in CONFIG["nodes"]) - before
        self.assertGreaterEqual(framed, 19, "the gateway's calls to its nodes did not move to node frames")

    # -- concurrent callers of one version: stacked for the node, each answered with its own rows ---

    def test_concurrent_predicts_each_get_their_own_rows(self):
        def push_path(model, path):
            REG_A.CreateModel(registry_pb2.CreateModelRequest(name=model), metadata=ADMIN, timeout=10)
            with open(path, "rb") as f:
                data = f.read()
            meta = registry_pb2.UploadMetadata(model=model, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data), aliases=["production"])
            REG_A.UploadVersion(iter([registry_pb2.UploadVersionRequest(metadata=meta), registry_pb2.UploadVersionRequest(chunk=data)]), metadata=ADMIN, timeout=60)

        def int64s(i, rows):
            values = [i * 1000 + j for j in range(rows * 2)] if i % 7 else [2**62 + i, -(2**62) - i] * rows
            tensor = tensor_pb2.Tensor(name="x", dtype=tensor_pb2.DATA_TYPE_INT64, shape=[rows, 2], raw_data=struct.pack(f"<{rows * 2}q", *values))
            return inference_pb2.PredictRequest(model="stack-int64s", inputs=[tensor]), values

        def strings(i, rows):
            values = [f"{i}:{j}" + "\u00e9" * (i % 4) for j in range(rows * 2)]
            tensor = tensor_pb2.Tensor(name="x", dtype=tensor_pb2.DATA_TYPE_STRING, shape=[rows, 2], string_data=values)
            return inference_pb2.PredictRequest(model="stack-strings", inputs=[tensor]), values

        def answer_values(response):
            y = response.outputs[0]
            if y.dtype == tensor_pb2.DATA_TYPE_STRING:
                return list(y.shape), list(y.string_data)
            return list(y.shape), list(struct.unpack(f"<{len(y.raw_data) // 8}q", y.raw_data))

        push_path("stack-int64s", CONFIG["identity"]["int64s"])
        push_path("stack-strings", CONFIG["identity"]["strings"])
        # One call each first: the gateway stacks a version once it has seen the size of its answers.
        for make in (int64s, strings):
            request, values = make(1, 1)
            self.assertEqual(answer_values(GW_A.Predict(request, metadata=PREDICT, timeout=30)), ([1, 2], values))
        before = self.node_predicts("stack-int64s") + self.node_predicts("stack-strings")
        calls = []
        for i in range(240):
            request, values = (int64s if i % 2 else strings)(i, 1 + i % 3)
            calls.append((GW_A.Predict.future(request, metadata=PREDICT, timeout=30), request.inputs[0].shape, values))
        for future, shape, values in calls:
            self.assertEqual(answer_values(future.result()), (list(shape), values))
        node_calls = self.node_predicts("stack-int64s") + self.node_predicts("stack-strings") - before
        print(f"\n  {len(calls)} concurrent Predicts reached the nodes as {node_calls:.0f} calls", file=sys.stderr)
        self.assertLess(node_calls, len(calls), "no two concurrent Predicts of one version were stacked into one node call")

    # -- aliases flipped through one gateway, read through the other ----------------------------

    def test_alias_flips_through_one_gateway_are_seen_at_once_through_the_other(self):
        v1 = push("flip", "mlp1", aliases=["production"]).version
        v2 = push("flip", "mlp2").version
        stale = 0
        for i in range(40):
            target, fixture = (v2, "mlp2") if i % 2 == 0 else (v1, "mlp1")
            REG_A.SetAlias(registry_pb2.SetAliasRequest(model="flip", alias="production", version=target), metadata=ADMIN, timeout=10)
            answer = GW_B.Predict(request_for("flip", fixture), metadata=PREDICT, timeout=30)
            if answer.version != target:
                stale += 1
            else:
                self.assertMatchesOnnxruntime(answer, fixture)
        self.assertEqual(stale, 0, f"{stale} of 40 reads through gateway B answered from the previous alias target")

    def test_alias_flips_while_the_reading_gateway_is_frozen_are_seen_when_it_resumes(self):
        # Gateway B is stopped (SIGSTOP, connections left open) while the alias is flipped through A: the flip
        # must still be acknowledged, and the first read through B once it resumes must see it.
        v1 = push("frozen-flip", "mlp1", aliases=["production"]).version
        v2 = push("frozen-flip", "mlp2").version
        self.assertEqual(GW_B.Predict(request_for("frozen-flip", "mlp1"), metadata=PREDICT, timeout=30).version, v1)
        # B answers hits from memory under a lease (no Redis read per call): what a freeze must not make stale.
        self.wait_for_metric(CONFIG["gateway_b_metrics"], "maas_cache_lease_held", lambda v: v == 1)
        waited_out = metric(CONFIG["registry_metrics"], "maas_registry_lease_waited_out_total")
        pid = CONFIG["gateway_b_pid"]
        stale, slowest = [], 0.0
        for i in range(6):
            target = v2 if i % 2 == 0 else v1
            os.kill(pid, signal.SIGSTOP)
            try:
                started = time.monotonic()
                REG_A.SetAlias(registry_pb2.SetAliasRequest(model="frozen-flip", alias="production", version=target), metadata=ADMIN, timeout=10)
                slowest = max(slowest, time.monotonic() - started)
            finally:
                os.kill(pid, signal.SIGCONT)
            answer = GW_B.Predict(request_for("frozen-flip", "mlp2" if target == v2 else "mlp1"), metadata=PREDICT, timeout=30)
            if answer.version != target:
                stale.append(f"flip {i} to v{target}: served v{answer.version}")
        print(f"\n  alias flips with gateway B frozen: slowest acknowledged in {slowest * 1000:.0f} ms", file=sys.stderr)
        self.assertEqual(stale, [], "reads through gateway B right after it resumed answered from the previous alias target")
        self.assertLess(slowest, 5.0, "a frozen gateway held an alias flip up for longer than its lease allows")
        # The registry did wait for the frozen gateway's lease to run out: B's lease was live when it froze.
        self.assertGreater(metric(CONFIG["registry_metrics"], "maas_registry_lease_waited_out_total"), waited_out)

    def wait_for_metric(self, address, name, ok, timeout=10.0):
        deadline = time.monotonic() + timeout
        while True:
            value = metric(address, name)
            if ok(value):
                return value
            if time.monotonic() > deadline:
                self.fail(f"{name} at {address} is {value} after {timeout} s")
            time.sleep(0.05)


if __name__ == "__main__":
    unittest.main()
