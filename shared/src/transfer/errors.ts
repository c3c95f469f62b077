// Why a transfer is refused: a kind the server turns into its refusal reason, and a message for people.

export type TransferErrorKind = 'manifest' | 'order' | 'size' | 'checksum' | 'incomplete' | 'nonfinite';

export class TransferError extends Error {
  override name = 'TransferError';
  constructor(readonly kind: TransferErrorKind, message: string) {
    super(message);
  }
}
