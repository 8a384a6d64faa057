// docs/api.md's CLI reference is the program's own: it cannot go stale without this failing.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { BEGIN, END, EXIT_NOTES, allCommands, commandPath, renderCliReference, spliceReference } from '../../client/cli/reference';
import { buildProgram } from '../../client/cli/program';

const DOC = path.join(__dirname, '..', '..', '..', 'docs', 'api.md');
const doc = fs.readFileSync(DOC, 'utf8');

test('docs/api.md holds the reference generated from the program', () => {
  const section = doc.slice(doc.indexOf(BEGIN), doc.indexOf(END) + END.length);
  assert.equal(section, renderCliReference(), 'docs/api.md is stale: npm run build && node dist/client/cli/reference.js --write docs/api.md');
});

test('every command and every flag is in docs/api.md', () => {
  const program = buildProgram();
  const help = program.createHelp();
  const paths = allCommands(program).map(commandPath);
  for (const p of ['', 'region', 'region create', 'region list', 'region show', 'region delete', 'region resize', 'region sync', 'region evict', 'region heatmap', 'stats', 'servers', 'servers add', 'servers remove']) {
    assert.ok(paths.includes(p), `the program has "${p}"`);
  }
  for (const c of allCommands(program)) {
    assert.ok(doc.includes(`### \`${help.commandUsage(c)}\``), `docs/api.md documents farmem ${commandPath(c)}`);
    for (const o of help.visibleOptions(c)) if (o.long !== '--help') assert.ok(doc.includes(`\`${help.optionTerm(o)}\``), `${commandPath(c)} ${o.flags}`);
  }
  for (const p of Object.keys(EXIT_NOTES)) assert.ok(paths.includes(p), `exit notes for "${p}", which exists`);
  for (const code of ['| 0 |', '| 1 |', '| 2 |']) assert.ok(doc.includes(code), `exit code ${code}`);
});

test('splicing needs the markers', () => {
  assert.equal(spliceReference(`a\n${BEGIN}\nold\n${END}\nb`, 'new'), 'a\nnew\nb');
  assert.throws(() => spliceReference('no markers', 'new'), {
    message: `Expected the markers ${BEGIN} and ${END} in the document but received a document without them`,
  });
});
