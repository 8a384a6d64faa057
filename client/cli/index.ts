// farmem: the command-line client of farmemd (bin `farmem`). See program.ts for the commands.
import { run } from './program';

void run(process.argv).then((code) => {
  process.exitCode = code;
});
