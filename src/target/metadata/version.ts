import { z } from 'zod';

/** The format this build writes. Readers accept any minor of a known major (unknown members kept). */
export const FORMAT_VERSION = { major: 1, minor: 0 } as const;

export const formatVersionSchema = z.object({
  major: z.number().int().nonnegative(),
  minor: z.number().int().nonnegative(),
});
export type FormatVersion = z.infer<typeof formatVersionSchema>;

/** The kinds of metadata documents on a target; every document names its kind. */
export type MetadataKind = 'target' | 'workload' | 'lease' | 'snapshot' | 'vm' | 'manifest';
