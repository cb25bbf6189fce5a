import assert from 'node:assert/strict';
import { resolve } from 'node:path';
import { test } from 'node:test';
import { CatalogError } from './errors.js';
import { assertValidName } from './names.js';
import { parseCatalogUrl } from './open.js';

test('catalog URLs: postgres by scheme, SQLite by path or sqlite:', () => {
  assert.deepEqual(parseCatalogUrl('postgres://u@h:5432/db'), {
    dialect: 'postgres',
    target: 'postgres://u@h:5432/db',
  });
  assert.equal(parseCatalogUrl('postgresql://h/db').dialect, 'postgres');
  assert.deepEqual(parseCatalogUrl(':memory:'), { dialect: 'sqlite', target: ':memory:' });
  assert.deepEqual(parseCatalogUrl('sqlite::memory:'), { dialect: 'sqlite', target: ':memory:' });
  assert.deepEqual(parseCatalogUrl('sqlite:/var/lib/lb.db'), { dialect: 'sqlite', target: '/var/lib/lb.db' });
  assert.deepEqual(parseCatalogUrl('sqlite:///var/lib/lb.db'), {
    dialect: 'sqlite',
    target: '/var/lib/lb.db',
  });
  assert.deepEqual(parseCatalogUrl('lb.db'), { dialect: 'sqlite', target: resolve('lb.db') });
});

test('catalog URLs: other schemes and empty strings are refused, not taken for file names', () => {
  for (const bad of ['mysql://h/db', '', '  ', 'sqlite:']) {
    assert.throws(
      () => parseCatalogUrl(bad),
      (e: unknown) => e instanceof CatalogError && e.code === 'CATALOG_URL_INVALID',
    );
  }
});

test('names: one rule for every face', () => {
  for (const ok of ['blue', 'alice@example.org', 'team 7', 'a.b_c-d+e'])
    assert.equal(assertValidName('x', ok), ok);
  for (const bad of ['', ' lead', '-flag', '../etc', 'a/b', 'tab\there', 'x'.repeat(129)]) {
    assert.throws(() => assertValidName('x', bad), /invalid x name/);
  }
});
