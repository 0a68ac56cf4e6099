// The errors that end the program before it runs. Kept apart from config, and importing nothing of
// the project, so that collectors, the inventory and the web layer can throw them without
// importing config (which is handed the collectors, never imports them).

/** A flag or value the exporter cannot use; the CLI prints its message and exits with status 2. */
export class ConfigError extends Error {
  override name = 'ConfigError';
}

/** Output and exit status for `--help` / `--version`, which end the program without running it. */
export class EarlyExit extends Error {
  constructor(
    readonly output: string,
    readonly exitCode = 0,
  ) {
    super('early exit');
  }
}
