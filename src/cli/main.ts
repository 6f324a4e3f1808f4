#!/usr/bin/env node
// xnatfs command line: mount, unmount, demo, emulator.
import { readFileSync } from 'node:fs';
import { FsError } from '../fs/errors.js';
import { XnatError } from '../xnat/types.js';
import { UsageError } from './args.js';

const HELP = `xnatfs — mount an XNAT imaging archive as ordinary folders and files

Usage:
  xnatfs mount URL MOUNTPOINT [options]   mount (foreground; see xnatfs mount --help)
  xnatfs unmount MOUNTPOINT               unmount a mount made by xnatfs (others are refused;
                                          exit 4 when nothing is mounted there)
  xnatfs demo [MOUNTPOINT] [--once] [--port N]
                                          start the XNAT emulator with sample data and mount it
  xnatfs emulator [--port N] [--data DIR] run the XNAT emulator alone (see xnatfs emulator --help)
  xnatfs --version

Layout: MOUNTPOINT/projects/P/subjects/S/experiments/E/scans/<ID>-<type>/resources/R/files/…
`;

function version(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string };
  return pkg.version;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  const wantsHelp = rest.includes('--help') || rest.includes('-h');
  switch (command) {
    case undefined:
    case '--help':
    case '-h':
    case 'help':
      process.stdout.write(HELP);
      return 0;
    case '--version':
    case '-V':
      process.stdout.write(`${version()}\n`);
      return 0;
    case 'mount': {
      const m = await import('./mount-command.js');
      if (wantsHelp) return void process.stdout.write(m.MOUNT_HELP), 0;
      return m.runMountCommand(rest);
    }
    case 'unmount':
    case 'umount': {
      const u = await import('./unmount-command.js');
      if (wantsHelp) return void process.stdout.write(u.UNMOUNT_HELP), 0;
      return u.runUnmountCommand(rest);
    }
    case 'demo': {
      const d = await import('./demo-command.js');
      if (wantsHelp) return void process.stdout.write(d.DEMO_HELP), 0;
      return d.runDemoCommand(rest);
    }
    case 'emulator': {
      const { runEmulatorCommand } = await import('../emulator/cli.js');
      await runEmulatorCommand(rest);
      return 0;
    }
    default:
      throw new UsageError(`unknown command '${command}'`);
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    if (err instanceof UsageError) {
      console.error(`xnatfs: ${err.message}\n\n${HELP}`);
      process.exitCode = 2;
    } else if (err instanceof XnatError || err instanceof FsError || (err as { code?: string }).code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      console.error(`xnatfs: ${(err as Error).message}`);
      process.exitCode = 1;
    } else {
      console.error(`xnatfs: ${err instanceof Error ? err.message : String(err)}`);
      if (process.env['DEBUG']) console.error(err);
      process.exitCode = 1;
    }
    // Handles (sockets, timers) of a failed start must not keep the process alive.
    setTimeout(() => process.exit(), 200).unref();
  },
);
