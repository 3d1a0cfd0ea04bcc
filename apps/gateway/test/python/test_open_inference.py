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
    data = open(path, "rb").read()

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


if __name__ == "__main__":
    unittest.main()
