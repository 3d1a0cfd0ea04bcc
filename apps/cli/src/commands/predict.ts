import type { Command } from 'commander';
import { CliError } from '../cli-error';
import type { Connection } from '../connection';

type Run = (fn: (conn: Connection) => Promise<void>) => () => Promise<void>;

/** `maas predict <model[@alias|:version]> --input name=...`: prints outputs as JSON. */
export function registerPredictCommand(program: Command, run: Run): void {
  program
    .command('predict <reference>')
    .description('run a prediction through the gateway; reference is model, model:version or model@alias')
    .requiredOption('-i, --input <name=value...>', 'input as name=[[...]] (nested JSON arrays) or name=@file.json; repeat per input')
    .option('-o, --output <name...>', 'only these outputs')
    .action((reference: string, opts: { input: string[]; output?: string[] }) =>
      run(async (conn) => {
        const [{ callUnary, parseModelRef }, { decodeTensor, encodeTensor, parseInputArg }] = await Promise.all([import('@maas/rpc'), import('../tensor-json.js')]);
        const ref = parseModelRef(reference);
        const gw = conn.gateway;
        const metadata = await callUnary(gw.modelMetadata.bind(gw), ref, conn.call());
        const parsed = opts.input.map(parseInputArg);
        const names = new Set<string>();
        for (const p of parsed) {
          if (names.has(p.name)) throw new CliError(`--input ${p.name} is given twice`);
          names.add(p.name);
        }
        const inputs = parsed.map((p) => encodeTensor(p.name, p.value, metadata.inputs.find((i) => i.name === p.name)));
        const answer = await callUnary(gw.predict.bind(gw), { ...ref, inputs, outputNames: opts.output ?? [], sha256: '' }, conn.call());
        const outputs = Object.fromEntries(answer.outputs.map((t) => [t.name, decodeTensor(t)]));
        process.stdout.write(`${JSON.stringify({ model: answer.model, version: answer.version, outputs }, null, 2)}\n`);
      })(),
    );
}
