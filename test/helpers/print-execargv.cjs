// Preloaded by a CLI test: prints the node flags the process was started with.
process.stdout.write(`execArgv: ${process.execArgv.join(' ')}\n`);
