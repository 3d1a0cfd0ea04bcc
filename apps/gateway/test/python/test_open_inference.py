"""The Open Inference Protocol (KServe V2 gRPC) on the gateway, as a Python grpcio user sees it.

Stubs come from proto/inference/grpc_predict_v2.proto, generated at test time by
apps/gateway/test/python-conformance.test.ts, which also starts the stack and
writes MAAS_CONFORMANCE_CONFIG. What Triton answers is the reference: outputs in
raw_output_contents whatever form the inputs took, BYTES elements as sent.
"""

import hashlib
import json
import os
import struct
import sys
import time
import unittest

import grpc

CONFIG = json.load(open(os.environ["MAAS_CONFORMANCE_CONFIG"]))
sys.path.insert(0, CONFIG["stubs"])

from inference import grpc_predict_v2_pb2 as v2, grpc_predict_v2_pb2_grpc as v2_grpc  # noqa: E402
from maas.v1 import registry_pb2, registry_pb2_grpc  # noqa: E402

ADMIN = (("authorization", "Bearer " + CONFIG["keys"]["admin"]),)
PREDICT = (("authorization", "Bearer " + CONFIG["keys"]["predict"]),)
CHANNEL = grpc.insecure_channel(CONFIG["gateway_a"], options=[("grpc.max_receive_message_length", -1)])
V2 = v2_grpc.GRPCInferenceServiceStub(CHANNEL)
REGISTRY = registry_pb2_grpc.RegistryServiceStub(CHANNEL)


def push_file(model, path):
    """Creates `model` and uploads the artifact at `path` as its version 1."""
    try:
        REGISTRY.CreateModel(registry_pb2.CreateModelRequest(name=model), metadata=ADMIN, timeout=10)
    except grpc.RpcError as err:
        if err.code() != grpc.StatusCode.ALREADY_EXISTS:
            raise
    with open(path, "rb") as artifact:
        data = artifact.read()

    def messages():
        meta = registry_pb2.UploadMetadata(model=model, sha256=hashlib.sha256(data).hexdigest(), size_bytes=len(data))
        yield registry_pb2.UploadVersionRequest(metadata=meta)
        yield registry_pb2.UploadVersionRequest(chunk=data)

    REGISTRY.UploadVersion(messages(), metadata=ADMIN, timeout=60)


def bytes_raw(elements):
    """BYTES elements in the protocol's raw form: a 4-byte little-endian length before each."""
    return b"".join(struct.pack("<I", len(e)) + e for e in elements)


def split_bytes_raw(raw):
    out, offset = [], 0
    while offset < len(raw):
        (length,) = struct.unpack_from("<I", raw, offset)
        out.append(raw[offset + 4 : offset + 4 + length])
        offset += 4 + length
    return out


def invalid_argument(test, call):
    with test.assertRaises(grpc.RpcError) as caught:
        call()
    test.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT, caught.exception.details())
    return caught.exception.details()


class OpenInferenceTensors(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        push_file("oip-strings", CONFIG["identity"]["strings"])
        push_file("oip-int64s", CONFIG["identity"]["int64s"])

    def infer(self, request):
        return V2.ModelInfer(request, metadata=PREDICT, timeout=30)

    def test_answers_raw_contents_to_a_typed_request(self):
        values = [1, -2, 2**40, -(2**40)]
        request = v2.ModelInferRequest(model_name="oip-int64s", inputs=[v2.ModelInferRequest.InferInputTensor(name="x", datatype="INT64", shape=[2, 2], contents=v2.InferTensorContents(int64_contents=values))])
        answer = self.infer(request)
        self.assertEqual(len(answer.raw_output_contents), 1)
        self.assertEqual(len(answer.outputs[0].contents.int64_contents), 0)
        self.assertEqual(list(struct.unpack("<4q", answer.raw_output_contents[0])), values)

    def test_int64_beyond_2_53_is_exact_raw_and_typed(self):
        values = [2**62 + 1, -(2**63), 2**63 - 1, 2**53 + 1]
        request = v2.ModelInferRequest(model_name="oip-int64s", inputs=[v2.ModelInferRequest.InferInputTensor(name="x", datatype="INT64", shape=[2, 2])], raw_input_contents=[struct.pack("<4q", *values)])
        self.assertEqual(list(struct.unpack("<4q", self.infer(request).raw_output_contents[0])), values)
        typed = v2.ModelInferRequest(model_name="oip-int64s", inputs=[v2.ModelInferRequest.InferInputTensor(name="x", datatype="INT64", shape=[2, 2], contents=v2.InferTensorContents(int64_contents=values))])
        self.assertEqual(list(struct.unpack("<4q", self.infer(typed).raw_output_contents[0])), values)

    def test_bytes_elements_come_back_as_sent(self):
        elements = ["plain".encode(), "é中🙂".encode("utf-8"), b"", "tab\tnew\nline".encode()]
        request = v2.ModelInferRequest(model_name="oip-strings", inputs=[v2.ModelInferRequest.InferInputTensor(name="x", datatype="BYTES", shape=[2, 2])], raw_input_contents=[bytes_raw(elements)])
        answer = self.infer(request)
        self.assertEqual(answer.outputs[0].datatype, "BYTES")
        self.assertEqual(split_bytes_raw(answer.raw_output_contents[0]), elements)
        typed = v2.ModelInferRequest(model_name="oip-strings", inputs=[v2.ModelInferRequest.InferInputTensor(name="x", datatype="BYTES", shape=[2, 2], contents=v2.InferTensorContents(bytes_contents=elements))])
        self.assertEqual(split_bytes_raw(self.infer(typed).raw_output_contents[0]), elements)

    def test_binary_bytes_elements_are_refused_not_rewritten(self):
        elements = [b"\xff\xfe\x00\x80", b"ok", b"ok", b"ok"]
        raw = v2.ModelInferRequest(model_name="oip-strings", inputs=[v2.ModelInferRequest.InferInputTensor(name="x", datatype="BYTES", shape=[2, 2])], raw_input_contents=[bytes_raw(elements)])
        self.assertIn("not valid UTF-8", invalid_argument(self, lambda: self.infer(raw)))
        typed = v2.ModelInferRequest(model_name="oip-strings", inputs=[v2.ModelInferRequest.InferInputTensor(name="x", datatype="BYTES", shape=[2, 2], contents=v2.InferTensorContents(bytes_contents=elements))])
        self.assertIn("not valid UTF-8", invalid_argument(self, lambda: self.infer(typed)))

    def test_raw_and_typed_contents_together_are_refused(self):
        request = v2.ModelInferRequest(
            model_name="oip-int64s",
            inputs=[v2.ModelInferRequest.InferInputTensor(name="x", datatype="INT64", shape=[1, 2], contents=v2.InferTensorContents(int64_contents=[1, 2]))],
            raw_input_contents=[struct.pack("<2q", 1, 2)],
        )
        self.assertIn("send every input one way", invalid_argument(self, lambda: self.infer(request)))

    def test_parameters_are_refused_by_name(self):
        tensor = v2.ModelInferRequest.InferInputTensor(name="x", datatype="INT64", shape=[1, 2], contents=v2.InferTensorContents(int64_contents=[1, 2]))
        request = v2.ModelInferRequest(model_name="oip-int64s", inputs=[tensor])
        request.parameters["priority"].uint64_param = 1
        self.assertIn('parameter "priority" not supported', invalid_argument(self, lambda: self.infer(request)))
        classify = v2.ModelInferRequest(model_name="oip-int64s", inputs=[tensor], outputs=[v2.ModelInferRequest.InferRequestedOutputTensor(name="y")])
        classify.outputs[0].parameters["classification"].int64_param = 2
        self.assertIn('parameter "classification" not supported', invalid_argument(self, lambda: self.infer(classify)))


class OpenInferenceExtensions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        push_file("oip-int64s-x", CONFIG["identity"]["int64s"])

    def test_server_metadata_lists_the_extensions_served(self):
        answer = V2.ServerMetadata(v2.ServerMetadataRequest(), metadata=PREDICT, timeout=10)
        self.assertEqual(list(answer.extensions), ["model_repository", "model_repository(unload_dependents)", "model_configuration", "statistics", "binary_tensor_data"])

    def test_model_config_in_tritons_terms(self):
        config = V2.ModelConfig(v2.ModelConfigRequest(name="oip-int64s-x"), metadata=PREDICT, timeout=10).config
        self.assertEqual((config.name, config.platform, config.backend), ("oip-int64s-x", "onnxruntime_onnx", "onnxruntime"))
        self.assertEqual([(i.name, i.data_type) for i in config.input], [("x", 9)])  # TYPE_INT64
        # Batching on (a free first dimension, the default max_batch_size): dims leave the batch dimension out.
        if config.max_batch_size > 0:
            self.assertEqual(list(config.input[0].dims), [2])
            self.assertEqual(config.WhichOneof("scheduling_choice"), "dynamic_batching")
        else:
            self.assertEqual(list(config.input[0].dims), [-1, 2])
        self.assertEqual(config.instance_group[0].kind, 2)  # KIND_CPU
        self.assertGreaterEqual(config.instance_group[0].count, 1)
        with self.assertRaises(grpc.RpcError) as caught:
            V2.ModelConfig(v2.ModelConfigRequest(name="oip-nothing"), metadata=PREDICT, timeout=10)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_model_statistics_count_what_this_gateway_routed(self):
        push_file("oip-stats", CONFIG["identity"]["int64s"])

        def infer(shape, values):
            tensor = v2.ModelInferRequest.InferInputTensor(name="x", datatype="INT64", shape=shape, contents=v2.InferTensorContents(int64_contents=values))
            return V2.ModelInfer(v2.ModelInferRequest(model_name="oip-stats", inputs=[tensor]), metadata=PREDICT, timeout=30)

        before = time.time() * 1000
        for _ in range(3):
            infer([2, 2], [1, 2, 3, 4])
        with self.assertRaises(grpc.RpcError):
            infer([1, 3], [1, 2, 3])  # the node refuses the shape: a failed inference of this version
        stats = V2.ModelStatistics(v2.ModelStatisticsRequest(name="oip-stats"), metadata=PREDICT, timeout=10).model_stats
        self.assertEqual(len(stats), 1)
        s = stats[0]
        self.assertEqual((s.name, s.version, s.inference_count, s.execution_count), ("oip-stats", "1", 6, 3))
        self.assertEqual((s.inference_stats.success.count, s.inference_stats.fail.count), (3, 1))
        self.assertEqual((s.inference_stats.queue.count, s.inference_stats.compute_infer.count), (3, 3))
        self.assertGreater(s.inference_stats.success.ns, s.inference_stats.compute_infer.ns)
        self.assertGreater(s.inference_stats.compute_infer.ns, 0)
        self.assertGreaterEqual(s.last_inference, before - 1000)
        everything = V2.ModelStatistics(v2.ModelStatisticsRequest(), metadata=PREDICT, timeout=10).model_stats
        self.assertIn("oip-stats", [m.name for m in everything])
        with self.assertRaises(grpc.RpcError) as caught:
            V2.ModelStatistics(v2.ModelStatisticsRequest(name="oip-nothing"), metadata=PREDICT, timeout=10)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_repository_index_load_and_unload(self):
        push_file("oip-repo", CONFIG["identity"]["int64s"])

        def entries(ready=False):
            index = V2.RepositoryIndex(v2.RepositoryIndexRequest(ready=ready), metadata=PREDICT, timeout=10)
            return [(m.version, m.state) for m in index.models if m.name == "oip-repo"]

        self.assertEqual(entries(), [("", "UNAVAILABLE")])
        self.assertEqual(entries(ready=True), [])
        with self.assertRaises(grpc.RpcError) as caught:
            V2.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="oip-repo"), metadata=PREDICT, timeout=30)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.PERMISSION_DENIED)
        V2.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="oip-repo"), metadata=ADMIN, timeout=30)
        self.assertEqual(entries(ready=True), [("1", "READY")])
        unknown = v2.RepositoryModelUnloadRequest(model_name="oip-repo")
        unknown.parameters["force"].bool_param = True
        with self.assertRaises(grpc.RpcError) as caught:
            V2.RepositoryModelUnload(unknown, metadata=ADMIN, timeout=30)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn('"force"', caught.exception.details())
        # What Triton's client sends on every unload_model(): unload_dependents, taken (nothing here has dependents).
        unload = v2.RepositoryModelUnloadRequest(model_name="oip-repo")
        unload.parameters["unload_dependents"].bool_param = False
        V2.RepositoryModelUnload(unload, metadata=ADMIN, timeout=30)
        self.assertEqual(entries(), [("", "UNAVAILABLE")])
        # Unloaded is not gone: the next request loads it again.
        tensor = v2.ModelInferRequest.InferInputTensor(name="x", datatype="INT64", shape=[1, 2], contents=v2.InferTensorContents(int64_contents=[7, 8]))
        answer = V2.ModelInfer(v2.ModelInferRequest(model_name="oip-repo", inputs=[tensor]), metadata=PREDICT, timeout=30)
        self.assertEqual(list(struct.unpack("<2q", answer.raw_output_contents[0])), [7, 8])
        with self.assertRaises(grpc.RpcError) as caught:
            V2.RepositoryModelLoad(v2.RepositoryModelLoadRequest(model_name="oip-nothing"), metadata=ADMIN, timeout=30)
        self.assertEqual(caught.exception.code(), grpc.StatusCode.NOT_FOUND)

    def test_stream_infer_answers_each_request_with_its_id_and_errors_alone(self):
        def request(i, values, datatype="INT64"):
            tensor = v2.ModelInferRequest.InferInputTensor(name="x", datatype=datatype, shape=[1, 2], contents=v2.InferTensorContents(int64_contents=values))
            return v2.ModelInferRequest(model_name="oip-int64s-x", id=f"r{i}", inputs=[tensor])

        requests = [request(0, [1, 2]), request(1, [3, 4], datatype="BF16"), request(2, [2**60, -5])]
        answers = list(V2.ModelStreamInfer(iter(requests), metadata=PREDICT, timeout=30))
        self.assertEqual(len(answers), 3)
        by_id = {a.infer_response.id: a for a in answers}
        self.assertEqual(sorted(by_id), ["r0", "r1", "r2"])
        self.assertEqual(by_id["r0"].error_message, "")
        self.assertEqual(list(struct.unpack("<2q", by_id["r0"].infer_response.raw_output_contents[0])), [1, 2])
        self.assertEqual(list(struct.unpack("<2q", by_id["r2"].infer_response.raw_output_contents[0])), [2**60, -5])
        self.assertTrue(by_id["r1"].error_message.startswith("INVALID_ARGUMENT: "), by_id["r1"].error_message)


if __name__ == "__main__":
    unittest.main()
