export function compileFold(): Promise<Buffer>;
