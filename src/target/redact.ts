/**
 * Secrets never go to a target. Domain XML can carry some: graphics passwords (VNC/SPICE passwd=)
 * and inline auth in disk sources. They are blanked before vm.json is written; the usage/secret
 * elements that only name a libvirt secret by UUID are kept (they hold no secret material).
 */
export function redactDomainXml(xml: string): string {
  return xml.replace(/(\s(?:passwd|password)\s*=\s*)(['"])[^'"]*\2/gi, '$1$2REDACTED$2');
}
