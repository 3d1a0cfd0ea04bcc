#!/usr/bin/env node
// Regenerates libs/proto/src/gen from proto/**/*.proto with ts-proto.
// The output folder is wiped first so that removed messages do not linger.
'use strict';
const { execFileSync } = require('node:child_process');
const fs = require('node:fs');
const path = require('node:path');

const root = path.resolve(__dirname, '..');
const protoRoot = path.join(root, 'proto');
const outDir = path.join(root, 'libs/proto/src/gen');
const protocDir = path.dirname(require.resolve('protoc/package.json'));
const plugin = path.join(root, 'node_modules/.bin/protoc-gen-ts_proto');

function listProtos(dir) {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return listProtos(full);
    return entry.name.endsWith('.proto') ? [path.relative(protoRoot, full)] : [];
  });
}

const optionsWith = (forceLong) =>
  [
    'outputServices=grpc-js',
    'esModuleInterop=true',
    'env=node',
    'useDate=true',
    `forceLong=${forceLong}`,
    'oneof=unions-value',
    'useExactTypes=false',
    'exportCommonSymbols=false',
  ].join(',');
// The Open Inference Protocol carries int64 and uint64 tensor elements (int64_contents) that must
// stay exact beyond 2^53: its 64-bit fields are bigint. MaaS's own messages keep numbers.
const BIGINT_PROTOS = new Set(['inference/grpc_predict_v2.proto', 'inference/model_config.proto']);

fs.rmSync(outDir, { recursive: true, force: true });
fs.mkdirSync(outDir, { recursive: true });
const protos = listProtos(protoRoot).sort();
for (const [forceLong, group] of [
  ['number', protos.filter((p) => !BIGINT_PROTOS.has(p))],
  ['bigint', protos.filter((p) => BIGINT_PROTOS.has(p))],
]) {
  execFileSync(
    process.execPath,
    [
      path.join(protocDir, 'protoc.cjs'),
      `--plugin=protoc-gen-ts_proto=${plugin}`,
      `--ts_proto_out=${outDir}`,
      `--ts_proto_opt=${optionsWith(forceLong)}`,
      `-I${protoRoot}`,
      `-I${path.join(protocDir, 'include')}`,
      ...group,
    ],
    { stdio: 'inherit', cwd: root },
  );
}

// The descriptors the gateway's server reflection serves: exactly as protoc builds them, for the
// services the gateway answers, with every file they import (well-known types included). The
// health proto gets its canonical name (grpc/health/v1/health.proto), as clients know it.
const healthDir = path.join(path.dirname(require.resolve('grpc-health-check/package.json')), 'proto/health/v1');
execFileSync(
  process.execPath,
  [
    path.join(protocDir, 'protoc.cjs'),
    `--descriptor_set_out=${path.join(outDir, 'gateway-descriptors.binpb')}`,
    '--include_imports',
    `-I${protoRoot}`,
    `-I${path.join(protocDir, 'include')}`,
    `-Igrpc/health/v1=${healthDir}`,
    'maas/v1/gateway.proto',
    'maas/v1/registry.proto',
    'inference/grpc_predict_v2.proto',
    'grpc/health/v1/health.proto',
  ],
  { stdio: 'inherit', cwd: root },
);
console.log(`generated ${protos.length} proto files and the gateway's descriptor set into ${path.relative(root, outDir)}`);
