// fedsam provision: startup kits for sites identified by certificate (server/src/pki/provision.ts does the work).
import { resolve } from 'node:path';
import { Option, type Command } from 'commander';
import { provision } from '@fedsam/server/pki/provision';
import { parseNameList } from '../args.ts';
import { noBackend, print } from '../options.ts';

interface ProvisionFlags {
  out: string;
  sites?: string[];
  serverHost?: string;
  baseModel?: string;
  revoke?: string[];
}

export function registerProvisionCommand(program: Command): Command {
  return noBackend(program.command('provision'))
    .description('startup kits for sites identified by certificate: a federation CA, the server certificate and server.yaml (client certificates required), one kit per site (certificate, key, site.yaml); --revoke a site')
    .addOption(new Option('--out <dir>', 'kit folder: ca/ (keep it off the server), server/, one folder per site').makeOptionMandatory())
    .addOption(new Option('--sites <a,b,c>', 'sites to make kits for (repeatable; existing kits are kept)').argParser(parseNameList))
    .addOption(new Option('--server-host <host[:port]>', 'name or IP the sites reach the server by (port default 8443); needed the first time'))
    .addOption(new Option('--base-model <dir>', 'base_model of server.yaml (default: the built-in fedsam-tiny)'))
    .addOption(new Option('--revoke <site>', 'revoke this site\'s certificate (repeatable); then reload the server: kill -HUP <pid>').argParser(parseNameList))
    .action(async (o: ProvisionFlags) => {
      if (!o.sites?.length && !o.revoke?.length && !o.serverHost) throw new Error('nothing to do: give --sites (with --server-host the first time) and/or --revoke');
      await provision({ out: resolve(o.out), sites: o.sites, serverHost: o.serverHost, baseModel: o.baseModel, revoke: o.revoke, log: print });
    });
}
