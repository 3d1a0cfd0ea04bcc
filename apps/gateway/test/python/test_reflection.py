"""Server reflection on the gateway, read the way grpcurl reads it.

The descriptors the gateway serves go into a fresh, strict descriptor pool
(protobuf's own, which refuses a file whose dependencies are missing or whose
symbols clash), and a call is then made with message classes built from that
pool alone, as a dynamic client does. Stubs for the reflection protocol are
generated at test time by apps/gateway/test/python-conformance.test.ts.
"""

import json
import os
import sys
import unittest

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

CONFIG = json.load(open(os.environ["MAAS_CONFORMANCE_CONFIG"]))
sys.path.insert(0, CONFIG["stubs"])

from maasreflection.v1 import reflection_pb2, reflection_pb2_grpc  # noqa: E402

PREDICT = (("authorization", "Bearer " + CONFIG["keys"]["predict"]),)
SERVED = ["grpc.health.v1.Health", "inference.GRPCInferenceService", "maas.v1.GatewayService", "maas.v1.RegistryService"]


class ServerReflection(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.channel = grpc.insecure_channel(CONFIG["gateway_a"])
        cls.stub = reflection_pb2_grpc.ServerReflectionStub(cls.channel)

    def ask(self, **question):
        answers = list(self.stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**question)]), metadata=PREDICT, timeout=10))
        self.assertEqual(len(answers), 1)
        self.assertFalse(answers[0].HasField("error_response"), answers[0].error_response.error_message)
        return answers[0]

    def strict_pool(self, services):
        """Every file the services need, fetched by reflection and added to a new pool in dependency order."""
        files = {}
        for service in services:
            for blob in self.ask(file_containing_symbol=service).file_descriptor_response.file_descriptor_proto:
                proto = descriptor_pb2.FileDescriptorProto.FromString(blob)
                files[proto.name] = proto
        pool, added = descriptor_pool.DescriptorPool(), set()

        def add(name):
            if name in added:
                return
            if name not in files:
                blob = self.ask(file_by_filename=name).file_descriptor_response.file_descriptor_proto[0]
                files[name] = descriptor_pb2.FileDescriptorProto.FromString(blob)
            for dependency in files[name].dependency:
                add(dependency)
            pool.Add(files[name])
            added.add(name)

        for name in list(files):
            add(name)
        return pool, files

    def test_lists_exactly_the_services_the_gateway_answers(self):
        listed = sorted(s.name for s in self.ask(list_services="").list_services_response.service)
        self.assertEqual([s for s in listed if not s.startswith("grpc.reflection.")], SERVED)

    def test_a_strict_pool_takes_the_descriptors_and_a_dynamic_call_works(self):
        pool, files = self.strict_pool(SERVED)
        for service in SERVED:
            pool.FindServiceByName(service)
        # Map fields as protoc writes them: a nested XxxEntry message with map_entry set.
        parameters = pool.FindMessageTypeByName("inference.ModelInferRequest").fields_by_name["parameters"]
        self.assertEqual(parameters.message_type.name, "ParametersEntry")
        self.assertTrue(parameters.message_type.GetOptions().map_entry)
        # JSON names as protoc derives them (lowerCamelCase of the field name).
        self.assertEqual(parameters.containing_type.fields_by_name["model_name"].json_name, "modelName")
        # Well-known types come as their real files, not renamed copies.
        for name, proto in files.items():
            for dependency in proto.dependency:
                if dependency.startswith("google/protobuf/"):
                    self.assertIn(dependency, ("google/protobuf/timestamp.proto", "google/protobuf/empty.proto", "google/protobuf/struct.proto", "google/protobuf/duration.proto"), name)

        factory = message_factory.MessageFactory(pool)
        live_request = factory.GetPrototype(pool.FindMessageTypeByName("inference.ServerLiveRequest"))
        live_response = factory.GetPrototype(pool.FindMessageTypeByName("inference.ServerLiveResponse"))
        method = pool.FindServiceByName("inference.GRPCInferenceService").methods_by_name["ServerLive"]
        call = self.channel.unary_unary(f"/{method.containing_service.full_name}/{method.name}", request_serializer=live_request.SerializeToString, response_deserializer=live_response.FromString)
        self.assertTrue(call(live_request(), metadata=PREDICT, timeout=10).live)

    def test_unknown_symbols_and_files_are_not_found(self):
        answers = list(self.stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(file_containing_symbol="maas.v1.Nope"), reflection_pb2.ServerReflectionRequest(file_by_filename="nope.proto")]), metadata=PREDICT, timeout=10))
        self.assertEqual([a.error_response.error_code for a in answers], [grpc.StatusCode.NOT_FOUND.value[0]] * 2)


if __name__ == "__main__":
    unittest.main()
