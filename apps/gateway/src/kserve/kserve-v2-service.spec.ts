import { KserveV2Service, SUPPORTED_EXTENSIONS, type KserveBackend } from './kserve-v2-service';

describe('KserveV2Service.serverMetadata', () => {
  const backend = {} as KserveBackend;

  it('lists every extension served, binary_tensor_data only while the REST side is on', () => {
    expect(new KserveV2Service(backend).serverMetadata().extensions).toEqual(SUPPORTED_EXTENSIONS);
    const grpcOnly = new KserveV2Service(backend, { rest: false }).serverMetadata().extensions;
    expect(grpcOnly).not.toContain('binary_tensor_data');
    expect(grpcOnly).toEqual(expect.arrayContaining(['model_repository', 'model_configuration', 'statistics']));
  });
});
