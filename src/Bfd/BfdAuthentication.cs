namespace Netcore.Bfd;

/// <summary>One authentication key (RFC 5880 6.7: a key id names a secret).</summary>
/// <param name="Id">Auth Key ID carried in packets (0-255).</param>
/// <param name="Secret">
/// The password (simple password: 1-16 bytes) or key (MD5: up to 16 bytes, SHA1: up to 20 bytes;
/// shorter keys are padded with zeros as RFC 5880 6.7.3/6.7.4 require).
/// </param>
public sealed record BfdAuthKey(byte Id, ReadOnlyMemory<byte> Secret);

/// <summary>
/// Authentication of a session (RFC 5880 6.7). Several keys may be configured for rollover:
/// packets are sent with <see cref="TransmitKeyId"/> and accepted with any configured key id, so
/// a key is rolled by first adding the new key on both ends, then switching the transmit key id,
/// then removing the old key.
/// </summary>
public sealed record BfdAuthentication
{
    /// <summary>The authentication type. <see cref="BfdAuthType.None"/> means no authentication.</summary>
    public BfdAuthType Type { get; init; }

    /// <summary>The configured keys (at least the transmit key).</summary>
    public IReadOnlyList<BfdAuthKey> Keys { get; init; } = [];

    /// <summary>The key id used for transmitted packets; must name one of <see cref="Keys"/>.</summary>
    public byte TransmitKeyId { get; init; }

    /// <summary>
    /// Compute Keyed SHA1 / Meticulous Keyed SHA1 digests as HMAC-SHA1(key, packet with a zeroed
    /// digest) for peers that do so (FRR), instead of SHA1 over the packet with the key in the digest
    /// field as RFC 5880 6.7.4 specifies. Default false (RFC behaviour).
    /// </summary>
    public bool HmacSha1Compatibility { get; init; }

    /// <summary>Creates authentication with a single key.</summary>
    public static BfdAuthentication Create(BfdAuthType type, byte keyId, ReadOnlyMemory<byte> secret) =>
        new() { Type = type, Keys = [new BfdAuthKey(keyId, secret)], TransmitKeyId = keyId };

    /// <summary>Creates authentication with a single key given as a UTF-8 string.</summary>
    public static BfdAuthentication Create(BfdAuthType type, byte keyId, string secret) =>
        Create(type, keyId, System.Text.Encoding.UTF8.GetBytes(secret));

    internal void Validate()
    {
        if (Type == BfdAuthType.None)
            return;
        if (!Enum.IsDefined(Type))
            throw new ArgumentException($"Unknown BFD authentication type {(byte)Type}.", nameof(Type));
        int max = Type switch
        {
            BfdAuthType.SimplePassword or BfdAuthType.KeyedMd5 or BfdAuthType.MeticulousKeyedMd5 => 16,
            _ => 20,
        };
        bool hasTx = false;
        foreach (BfdAuthKey k in Keys)
        {
            // RFC 5880 4.2: password 1-16 bytes; 4.3: MD5 key up to 16 bytes; 4.4: SHA1 key up to 20 bytes.
            if (k.Secret.Length < 1 || k.Secret.Length > max)
                throw new ArgumentException($"BFD {Type} key {k.Id} must be 1 to {max} bytes long.", nameof(Keys));
            hasTx |= k.Id == TransmitKeyId;
        }
        if (!hasTx)
            throw new ArgumentException($"The transmit key id {TransmitKeyId} is not among the configured keys.", nameof(TransmitKeyId));
    }
}
