import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseByteSize } from './image-convert.js';

describe('parseByteSize', () => {
  it('reads plain numbers and binary suffixes', () => {
    assert.equal(parseByteSize('65536'), 65536);
    assert.equal(parseByteSize('64K'), 65536);
    assert.equal(parseByteSize('64k'), 65536);
    assert.equal(parseByteSize('2M'), 2 * 1024 * 1024);
    assert.equal(parseByteSize('2MiB'), 2 * 1024 * 1024);
    assert.equal(parseByteSize('1G'), 1024 ** 3);
    assert.equal(parseByteSize('512b'), 512);
  });

  it('refuses what is not a size', () => {
    for (const bad of ['', 'abc', '-1', '0', '1.5M', '2X', '64 K B']) {
      assert.throws(() => parseByteSize(bad), /not a size/, bad);
    }
  });
});
