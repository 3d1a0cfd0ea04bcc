"""The Open Inference Protocol's REST side on the gateway, with Python's standard library and curl.

apps/gateway/test/python-conformance.test.ts starts the stack and writes
MAAS_CONFORMANCE_CONFIG. Models are pushed over gRPC (the registry's upload is a
gRPC stream); everything else here is plain HTTP as KServe's and Triton's
documents show it: JSON tensors, and the binary-data extension where a JSON
header of Inference-Header-Content-Length bytes is followed by raw tensor bytes.
Expected outputs come from onnxruntime run by the test harness, not from the stack.
"""

import base64
import gzip
import json
import os
import struct
import subprocess
import sys
import unittest
import urllib.error
import urllib.request

CONFIG = json.load(open(os.environ["MAAS_CONFORMANCE_CONFIG"]))
sys.path.insert(0, CONFIG["stubs"])
sys.path.insert(0, os.path.dirname(__file__))

from test_open_inference import push_file  # noqa: E402

BASE = "http://" + CONFIG["gateway_a_http"]
BASE_B = "http://" + CONFIG["gateway_b_http"]
ADMIN = {"Authorization": "Bearer " + CONFIG["keys"]["admin"]}
PREDICT = {"Authorization": "Bearer " + CONFIG["keys"]["predict"]}


class Answer:
    def __init__(self, status, headers, body):
        self.status, self.headers, self.body = status, headers, body

    def json(self):
        return json.loads(self.body)

    def split(self):
        """The JSON header and the binary part of a binary-data answer."""
        length = int(self.headers["Inference-Header-Content-Length"])
        return json.loads(self.body[:length]), self.body[length:]


def http(method, path, body=None, headers=None, base=BASE):
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method, headers={**PREDICT, **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return Answer(response.status, response.headers, response.read())
    except urllib.error.HTTPError as err:
        return Answer(err.code, err.headers, err.read())


def floats(b64):
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def as_float32(values):
    return list(struct.unpack(f"<{len(values)}f", struct.pack(f"<{len(values)}f", *values)))


class RestHealthAndMetadata(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        push_file("rest-mlp", CONFIG["models"]["mlp1"]["path"])

    def test_health_and_server_metadata(self):
        self.assertEqual(http("GET", "/v2/health/live", headers={"Authorization": ""}).status, 200)
        self.assertEqual(http("GET", "/v2/health/ready").status, 200)
        meta = http("GET", "/v2")
        self.assertEqual(meta.status, 200)
        self.assertEqual(meta.headers["Content-Type"], "application/json")
        self.assertEqual(meta.json()["name"], "maas")
        self.assertIn("binary_tensor_data", meta.json()["extensions"])

    def test_model_metadata_ready_config(self):
        meta = http("GET", "/v2/models/rest-mlp").json()
        self.assertEqual((meta["name"], meta["versions"], meta["platform"]), ("rest-mlp", ["1"], "onnxruntime_onnx"))
        self.assertEqual(meta["inputs"], [{"name": "input", "datatype": "FP32", "shape": [-1, 4]}])
        self.assertEqual(http("GET", "/v2/models/rest-mlp/versions/1").json()["versions"], ["1"])
        self.assertEqual(http("GET", "/v2/models/rest-mlp/ready").status, 200)
        self.assertEqual(http("GET", "/v2/models/rest-mlp/versions/1/ready").status, 200)
        self.assertEqual(http("GET", "/v2/models/rest-nothing/ready").status, 400)
        config = http("GET", "/v2/models/rest-mlp/config").json()
        self.assertEqual((config["name"], config["platform"]), ("rest-mlp", "onnxruntime_onnx"))
        self.assertEqual(config["input"][0]["name"], "input")
        self.assertEqual(config["input"][0]["data_type"], "TYPE_FP32")
        self.assertEqual(config["instance_group"][0]["kind"], "KIND_CPU")
        if config["max_batch_size"] > 0:
            self.assertEqual(config["input"][0]["dims"], [4])
            self.assertIn("dynamic_batching", config)

    def test_errors_are_json_with_the_status_of_their_code(self):
        missing = http("GET", "/v2/models/rest-nothing")
        self.assertEqual(missing.status, 404)
        self.assertIn('"rest-nothing"', missing.json()["error"])
        self.assertEqual(http("GET", "/v2/models/rest-mlp", headers={"Authorization": ""}).status, 401)
        self.assertEqual(http("GET", "/v2/models/rest-mlp", headers={"Authorization": "Bearer nope"}).status, 401)
        self.assertEqual(http("GET", "/v2/models/rest-mlp/versions/x").status, 400)
        nowhere = http("GET", "/v3/models")
        self.assertEqual(nowhere.status, 404)
        self.assertIn("/v2", nowhere.json()["error"])
        wrong = http("DELETE", "/v2/models/rest-mlp/infer")
        self.assertEqual(wrong.status, 405)
        self.assertEqual(wrong.headers["Allow"], "POST")
        for path in ["/v2/systemsharedmemory/status", "/v2/cudasharedmemory/region/r/register", "/v2/trace/setting", "/v2/logging"]:
            answer = http("GET", path)
            self.assertEqual(answer.status, 501, path)
            self.assertIn("not supported", answer.json()["error"])


class RestInference(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        push_file("rest-mlp-i", CONFIG["models"]["mlp1"]["path"])
        push_file("rest-strings", CONFIG["identity"]["strings"])
        push_file("rest-int64s", CONFIG["identity"]["int64s"])
        fixture = CONFIG["models"]["mlp1"]
        cls.input = floats(fixture["input"]["data"])
        cls.shape = fixture["input"]["shape"]
        (cls.output_name, cls.expected), = fixture["expected"].items()

    def infer(self, model, body, headers=None, base=BASE):
        return http("POST", f"/v2/models/{model}/infer", body, headers, base)

    def test_json_in_json_out_matches_onnxruntime(self):
        answer = self.infer("rest-mlp-i", {"id": "q1", "inputs": [{"name": "input", "shape": self.shape, "datatype": "FP32", "data": self.input}]})
        self.assertEqual(answer.status, 200, answer.body)
        body = answer.json()
        self.assertEqual((body["model_name"], body["model_version"], body["id"]), ("rest-mlp-i", "1", "q1"))
        out = body["outputs"][0]
        self.assertEqual((out["name"], out["datatype"], out["shape"]), (self.output_name, "FP32", self.expected["shape"]))
        # JSON carries each float32 as the double it is exactly: read back as float32 it is bit-exact.
        self.assertEqual(as_float32(out["data"]), floats(self.expected["data"]))

    def test_nested_data_is_read_row_major(self):
        rows = [self.input[i * 4 : (i + 1) * 4] for i in range(self.shape[0])]
        flat = self.infer("rest-mlp-i", {"inputs": [{"name": "input", "shape": self.shape, "datatype": "FP32", "data": self.input}]}).json()
        nested = self.infer("rest-mlp-i", {"inputs": [{"name": "input", "shape": self.shape, "datatype": "FP32", "data": rows}]}).json()
        self.assertEqual(flat["outputs"], nested["outputs"])

    def test_binary_data_in_and_out(self):
        raw = base64.b64decode(CONFIG["models"]["mlp1"]["input"]["data"])
        header = json.dumps({"inputs": [{"name": "input", "shape": self.shape, "datatype": "FP32", "parameters": {"binary_data_size": len(raw)}}], "parameters": {"binary_data_output": True}}).encode()
        answer = self.infer("rest-mlp-i", header + raw, {"Inference-Header-Content-Length": str(len(header)), "Content-Type": "application/octet-stream"})
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.headers["Content-Type"], "application/octet-stream")
        head, binary = answer.split()
        out = head["outputs"][0]
        self.assertNotIn("data", out)
        self.assertEqual(out["parameters"]["binary_data_size"], len(binary))
        self.assertEqual(binary, base64.b64decode(self.expected["data"]))

    def test_json_in_binary_out_per_output(self):
        request = {"inputs": [{"name": "input", "shape": self.shape, "datatype": "FP32", "data": self.input}], "outputs": [{"name": self.output_name, "parameters": {"binary_data": True}}]}
        head, binary = self.infer("rest-mlp-i", request).split()
        self.assertEqual(binary, base64.b64decode(self.expected["data"]))
        self.assertEqual(head["outputs"][0]["parameters"], {"binary_data_size": len(binary)})

    def test_gzip_request_body(self):
        body = gzip.compress(json.dumps({"inputs": [{"name": "input", "shape": self.shape, "datatype": "FP32", "data": self.input}]}).encode())
        answer = self.infer("rest-mlp-i", body, {"Content-Encoding": "gzip"})
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(as_float32(answer.json()["outputs"][0]["data"]), floats(self.expected["data"]))

    def test_int64_beyond_2_53_is_exact_both_ways(self):
        values = [2**62 + 1, -(2**63), 2**63 - 1, 2**53 + 1]
        answer = self.infer("rest-int64s", {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT64", "data": values}]})
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.json()["outputs"][0]["data"], values)
        out_of_range = self.infer("rest-int64s", {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [2**63, 1]}]})
        self.assertEqual(out_of_range.status, 400)
        self.assertIn("9223372036854775808", out_of_range.json()["error"])

    def test_bytes_as_json_strings_and_as_binary(self):
        elements = ["plain", "é中🙂", "", 'quote " and \\ back']
        answer = self.infer("rest-strings", {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "BYTES", "data": elements}]})
        self.assertEqual(answer.status, 200, answer.body)
        self.assertEqual(answer.json()["outputs"][0]["data"], elements)
        raw = b"".join(struct.pack("<I", len(e.encode())) + e.encode() for e in elements)
        header = json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw)}}], "parameters": {"binary_data_output": True}}).encode()
        head, binary = self.infer("rest-strings", header + raw, {"Inference-Header-Content-Length": str(len(header))}).split()
        self.assertEqual(binary, raw)
        bad = b"\xff\xfe\x00\x80"
        raw_bad = struct.pack("<I", 4) + bad + struct.pack("<I", 2) + b"ok" + struct.pack("<I", 2) + b"ok" + struct.pack("<I", 2) + b"ok"
        header = json.dumps({"inputs": [{"name": "x", "shape": [2, 2], "datatype": "BYTES", "parameters": {"binary_data_size": len(raw_bad)}}]}).encode()
        refused = self.infer("rest-strings", header + raw_bad, {"Inference-Header-Content-Length": str(len(header))})
        self.assertEqual(refused.status, 400)
        self.assertIn("not valid UTF-8", refused.json()["error"])

    def test_bad_requests_say_what_was_wrong(self):
        def refused(body, fragment, headers=None, status=400):
            answer = self.infer("rest-mlp-i", body, headers)
            self.assertEqual(answer.status, status, answer.body)
            self.assertIn(fragment, answer.json()["error"])

        tensor = {"name": "input", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}
        refused(b"{not json", "not valid JSON")
        refused({"inputs": []}, '"inputs"')
        refused({"inputs": [{**tensor, "data": [1, 2, 3]}]}, "holds 3 elements, expected 4")
        refused({"inputs": [{**tensor, "data": [1, 2, "x", 4]}]}, "element 2")
        refused({"inputs": [{**tensor, "datatype": "BF16"}]}, "BF16")
        refused({"inputs": [tensor], "parameters": {"priority": 1}}, '"priority"')
        refused({"inputs": [{**tensor, "shape": [1, 5], "data": [1, 2, 3, 4, 5]}]}, "input")
        header = json.dumps({"inputs": [{**{k: v for k, v in tensor.items() if k != "data"}, "parameters": {"binary_data_size": 16}}]}).encode()
        refused(header + b"\0" * 8, "runs past", {"Inference-Header-Content-Length": str(len(header))})
        refused(header + b"\0" * 20, "no input's binary_data_size claims", {"Inference-Header-Content-Length": str(len(header))})
        refused(header + b"\0" * 16, "Inference-Header-Content-Length", {"Inference-Header-Content-Length": "abc"})
        missing = self.infer("rest-nothing", {"inputs": [tensor]})
        self.assertEqual(missing.status, 404)
        self.assertEqual(self.infer("rest-mlp-i", {"inputs": [tensor]}, {"Authorization": ""}).status, 401)

    def test_a_body_over_the_limit_is_413(self):
        # Just over the limit, and 8 times over it: urllib reads no answer until it has sent the whole
        # body, so the 413 must wait for the body (a server that answers and closes at once breaks its pipe).
        for pad in (CONFIG["gateway_b_limit"], 8 * CONFIG["gateway_b_limit"]):
            big = b'{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[1,2,3,4]}],"pad":"' + b"x" * pad + b'"}'
            answer = self.infer("rest-mlp-i", big, base=BASE_B)
            self.assertEqual(answer.status, 413)
            self.assertIn("limit", answer.json()["error"])

    def test_curl_as_in_kserves_docs(self):
        body = json.dumps({"inputs": [{"name": "input", "shape": self.shape, "datatype": "FP32", "data": self.input}]})
        out = subprocess.run(
            ["curl", "-sS", "-H", PREDICT["Authorization"].join(["Authorization: ", ""]), "-H", "Content-Type: application/json", "-d", body, BASE + "/v2/models/rest-mlp-i/infer"],
            check=True, capture_output=True, timeout=30,
        )
        self.assertEqual(as_float32(json.loads(out.stdout)["outputs"][0]["data"]), floats(self.expected["data"]))


class RestStatisticsAndRepository(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        push_file("rest-repo", CONFIG["identity"]["int64s"])

    def test_statistics(self):
        body = {"inputs": [{"name": "x", "shape": [1, 2], "datatype": "INT64", "data": [1, 2]}]}
        for _ in range(2):
            self.assertEqual(http("POST", "/v2/models/rest-repo/infer", body).status, 200)
        stats = http("GET", "/v2/models/rest-repo/stats").json()["model_stats"]
        self.assertEqual(len(stats), 1)
        self.assertEqual((stats[0]["name"], stats[0]["version"]), ("rest-repo", "1"))
        self.assertGreaterEqual(stats[0]["inference_stats"]["success"]["count"], 2)
        self.assertIn("compute_infer", stats[0]["inference_stats"])
        self.assertIn("rest-repo", [s["name"] for s in http("GET", "/v2/models/stats").json()["model_stats"]])
        self.assertEqual(http("GET", "/v2/models/rest-nothing/stats").status, 404)

    def test_repository_index_load_unload_with_scopes(self):
        index = http("POST", "/v2/repository/index", b"")
        self.assertEqual(index.status, 200, index.body)
        self.assertIn("rest-repo", [m["name"] for m in index.json()])
        self.assertEqual(http("POST", "/v2/repository/models/rest-repo/load", b"").status, 403)
        self.assertEqual(http("POST", "/v2/repository/models/rest-repo/load", b"", ADMIN).status, 200)
        ready = http("POST", "/v2/repository/index", {"ready": True}).json()
        self.assertIn({"name": "rest-repo", "version": "1", "state": "READY", "reason": ""}, ready)
        refused = http("POST", "/v2/repository/models/rest-repo/unload", {"parameters": {"force": True}}, ADMIN)
        self.assertEqual(refused.status, 400)
        self.assertIn('"force"', refused.json()["error"])
        # What Triton's HTTP client sends on unload_model().
        self.assertEqual(http("POST", "/v2/repository/models/rest-repo/unload", {"parameters": {"unload_dependents": False}}, ADMIN).status, 200)
        self.assertNotIn("rest-repo", [m["name"] for m in http("POST", "/v2/repository/index", {"ready": True}).json()])
        self.assertEqual(http("POST", "/v2/repository/models/rest-nothing/load", b"", ADMIN).status, 404)


if __name__ == "__main__":
    unittest.main()
