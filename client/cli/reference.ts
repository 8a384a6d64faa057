// The CLI reference in docs/api.md, generated from the commander program itself (the same text as
// --help), so that the doc cannot drift: test/cli/reference.test.ts fails when it differs.
// Regenerate: npm run build && node dist/client/cli/reference.js --write docs/api.md
import fs from 'node:fs';
import type { Command, Help } from 'commander';
import { buildProgram } from './program';

export const BEGIN = '<!-- BEGIN farmem CLI reference: generated from client/cli/program.ts, do not edit by hand -->';
export const END = '<!-- END farmem CLI reference -->';

/** Exit codes beyond the common 0 / 1 / 2, by command path. */
export const EXIT_NOTES: Record<string, string> = {
  'region create': '1 when farmemd refuses (a region of that name exists, permission denied); 2 for a value farmemd finds invalid (name, size not a multiple of the page size).',
  'region show': '1 for an unknown region or one you may not use.',
  'region delete': '1 when you are neither the owner nor root.',
  'region sync': '1 when farmemd has no pager (nothing to write back).',
  'region evict': '1 when farmemd has no pager (nothing to evict).',
  'region warm': '1 when farmemd has no pager or no recorded run of the region (a process must attach and detach first).',
  'region heatmap': '1 when farmemd has no pager (no page map to draw), or the file cannot be written.',
  'servers add': '1 when you are not root or the address is already a memory server; 2 for an address, weight or token file farmemd finds invalid.',
  'servers remove': '1 when you are not root, the server is unknown, embedded, named by a region, or the only one.',
  stats: 'with --watch: 0 after --count refreshes or Ctrl-C; 1 when the last refresh could not reach farmemd.',
};

const esc = (s: string) => s.replace(/\|/g, '\\|');

/** Command path under the root: 'region create'. */
export function commandPath(c: Command): string {
  const names: string[] = [];
  for (let x: Command | null = c; x?.parent; x = x.parent) names.unshift(x.name());
  return names.join(' ');
}

/** Every command, depth first, the root included. */
export function allCommands(root: Command): Command[] {
  const help = root.createHelp();
  const out: Command[] = [];
  const walk = (c: Command) => {
    out.push(c);
    for (const s of help.visibleCommands(c)) if (s !== c && s.name() !== 'help') walk(s);
  };
  walk(root);
  return out;
}

function optionsTable(help: Help, c: Command): string[] {
  const opts = help.visibleOptions(c).filter((o) => o.long !== '--help');
  if (opts.length === 0) return [];
  return ['| option | meaning |', '| --- | --- |', ...opts.map((o) => `| \`${esc(help.optionTerm(o))}\`${o.mandatory ? ' (required)' : ''} | ${esc(help.optionDescription(o))} |`), ''];
}

export function renderCliReference(root: Command = buildProgram()): string {
  const help = root.createHelp();
  const out: string[] = [BEGIN, ''];
  for (const c of allCommands(root)) {
    const p = commandPath(c);
    out.push(`### \`${help.commandUsage(c)}\``, '');
    if (c.description()) out.push(`${c.description()}.`.replace(/\.\.$/, '.'), '');
    if (p === '') out.push('Options that go before the command, for every command:', '');
    out.push(...optionsTable(help, c));
    if (EXIT_NOTES[p] !== undefined) out.push(`Exit: ${EXIT_NOTES[p]}`, '');
  }
  out.push(END);
  return out.join('\n');
}

/** docs text with its generated section replaced by `section`. */
export function spliceReference(doc: string, section: string): string {
  const a = doc.indexOf(BEGIN);
  const b = doc.indexOf(END);
  if (a < 0 || b < a) throw new Error(`Expected the markers ${BEGIN} and ${END} in the document but received a document without them`);
  return doc.slice(0, a) + section + doc.slice(b + END.length);
}

if (require.main === module) {
  const i = process.argv.indexOf('--write');
  if (i < 0) process.stdout.write(`${renderCliReference()}\n`);
  else {
    const file = process.argv[i + 1]!;
    fs.writeFileSync(file, spliceReference(fs.readFileSync(file, 'utf8'), renderCliReference()));
  }
}
