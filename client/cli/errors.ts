// A failure of the CLI itself (not of a control call): printed as `farmem: MESSAGE`, exit `exitCode`.
export class CliError extends Error {
  constructor(
    message: string,
    readonly exitCode: number = 1,
  ) {
    super(message);
    this.name = 'CliError';
  }
}
