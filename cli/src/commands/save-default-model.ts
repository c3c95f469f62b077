// fedsam save-default-model: the built-in model as an HF SamModel folder.
import { Option, type Command } from 'commander';
import { resolve } from 'node:path';
import { DEFAULT_MODEL, loadModel } from '@fedsam/shared/model/presets';
import { saveModelFolder } from '@fedsam/client/modelFolder';
import { print } from '../options.ts';

export function registerSaveDefaultModelCommand(program: Command): Command {
  return program.command('save-default-model')
    .description(`write the built-in ${DEFAULT_MODEL} model as an HF SamModel folder (to pass around as --model)`)
    .addOption(new Option('--out <dir>', 'output folder').makeOptionMandatory())
    .action(async (o) => {
      const loaded = await loadModel(undefined);
      await saveModelFolder(resolve(o.out), loaded);
      print(`wrote ${resolve(o.out)} (config.json, model.safetensors, preprocessor_config.json)`);
      loaded.model.dispose();
    });
}
