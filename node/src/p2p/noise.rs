//! An authenticated, encrypted, one-way message channel over a TCP stream.
//!
//! Handshake: Noise `XX` (X25519, ChaCha20-Poly1305, BLAKE2s): both sides prove
//! their static key, which the contract lists as the participant's `cipher_pk`.
//! The prologue binds the handshake to one network (the contract account), so nodes
//! of another network cannot talk to ours.
//!
//! After the handshake the dialer only writes and the listener only reads: each
//! direction between two nodes is its own connection, which keeps both simple.
//!
//! Framing, on the wire:
//! - handshake messages: `u16` big-endian length, then the Noise message;
//! - transport: the plaintext stream is a sequence of messages, each a `u32`
//!   big-endian length and its bytes; it is cut into chunks of at most 65,519 bytes,
//!   each sent encrypted as a `u16` length and the ciphertext (chunk + 16-byte tag).
//!
//! A chunk that fails to decrypt, or a message longer than [`MAX_MESSAGE`], ends the
//! connection: a stream cipher cannot resynchronise, and the peer is misbehaving.

use std::fmt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_XX_25519_ChaChaPoly_BLAKE2s";
/// The largest Noise message.
const MAX_NOISE: usize = 65535;
/// The AEAD tag every encrypted chunk carries.
const TAG: usize = 16;
/// The largest plaintext chunk.
const MAX_CHUNK: usize = MAX_NOISE - TAG;
/// The largest application message accepted. Measured (`threshold`'s
/// `tests/message_sizes.rs`): a Beaver triple message is about 40 KB at n = 5 and
/// n = 10; keygen, resharing, presigning and signing messages of both schemes stay
/// under 1 KB. 1 MiB leaves 25x headroom while keeping what one connection can make
/// us buffer before the peer's byte budget sees it small.
pub const MAX_MESSAGE: usize = 1 << 20;

/// Why a channel failed. Every variant ends that connection only.
#[derive(Debug)]
pub enum ChannelError {
    Io(std::io::Error),
    /// The Noise handshake or a decryption failed: not our protocol, or tampering.
    Noise(snow::Error),
    /// The peer's static key is not the one expected of it.
    UnexpectedPeerKey,
    /// A message longer than [`MAX_MESSAGE`].
    Oversized(usize),
}

impl fmt::Display for ChannelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChannelError::Io(e) => write!(f, "connection error: {e}"),
            ChannelError::Noise(e) => write!(f, "handshake or decryption failed: {e}"),
            ChannelError::UnexpectedPeerKey => {
                f.write_str("the peer's key is not the one registered for it")
            }
            ChannelError::Oversized(n) => write!(
                f,
                "message of {n} bytes exceeds the {MAX_MESSAGE}-byte limit"
            ),
        }
    }
}

impl std::error::Error for ChannelError {}

impl From<std::io::Error> for ChannelError {
    fn from(e: std::io::Error) -> Self {
        ChannelError::Io(e)
    }
}

impl From<snow::Error> for ChannelError {
    fn from(e: snow::Error) -> Self {
        ChannelError::Noise(e)
    }
}

/// A node's static X25519 key pair for the peer-to-peer layer. The public half is
/// what the node registers on the contract as `cipher_pk`.
#[derive(Clone)]
pub struct StaticKey {
    private: [u8; 32],
    public: [u8; 32],
}

impl StaticKey {
    pub fn generate() -> Self {
        let builder = snow::Builder::new(PATTERN.parse().expect("a valid pattern"));
        let pair = builder
            .generate_keypair()
            .expect("the default resolver generates keys");
        StaticKey {
            private: pair.private.try_into().expect("32-byte private key"),
            public: pair.public.try_into().expect("32-byte public key"),
        }
    }

    /// Restores a key pair saved with [`StaticKey::to_parts`].
    pub fn from_parts(private: [u8; 32], public: [u8; 32]) -> Self {
        StaticKey { private, public }
    }

    pub fn to_parts(&self) -> ([u8; 32], [u8; 32]) {
        (self.private, self.public)
    }

    pub fn public(&self) -> [u8; 32] {
        self.public
    }
}

impl fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKey")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

fn builder<'a>(key: &'a StaticKey, prologue: &'a [u8]) -> Result<snow::Builder<'a>, ChannelError> {
    Ok(
        snow::Builder::new(PATTERN.parse().expect("a valid pattern"))
            .local_private_key(&key.private)?
            .prologue(prologue)?,
    )
}

async fn write_frame(stream: &mut TcpStream, bytes: &[u8]) -> Result<(), ChannelError> {
    let len = u16::try_from(bytes.len()).expect("Noise messages fit in u16");
    stream.write_all(&len.to_be_bytes()).await?;
    stream.write_all(bytes).await?;
    Ok(())
}

async fn read_frame<R: AsyncRead + Unpin>(
    stream: &mut R,
    buffer: &mut [u8; MAX_NOISE],
) -> Result<usize, ChannelError> {
    let mut len = [0u8; 2];
    stream.read_exact(&mut len).await?;
    let len = usize::from(u16::from_be_bytes(len));
    stream.read_exact(&mut buffer[..len]).await?;
    Ok(len)
}

/// The sending end of a channel (the dialer's side).
pub struct Sender {
    stream: TcpStream,
    transport: snow::TransportState,
    buffer: Box<[u8; MAX_NOISE]>,
    /// The plaintext stream of the messages being sent, and their frames on the
    /// wire (kept between sends, so their memory is reused).
    plain: Vec<u8>,
    wire: Vec<u8>,
}

impl Sender {
    /// Dials-side handshake over `stream`, requiring the listener's static key to be
    /// `expected_peer`.
    pub async fn handshake(
        mut stream: TcpStream,
        key: &StaticKey,
        prologue: &[u8],
        expected_peer: &[u8; 32],
    ) -> Result<Sender, ChannelError> {
        let mut noise = builder(key, prologue)?.build_initiator()?;
        let mut buffer = Box::new([0u8; MAX_NOISE]);
        let mut scratch = vec![0u8; MAX_NOISE];
        // -> e
        let n = noise.write_message(&[], &mut buffer[..])?;
        write_frame(&mut stream, &buffer[..n]).await?;
        // <- e, ee, s, es
        let n = read_frame(&mut stream, &mut buffer).await?;
        noise.read_message(&buffer[..n], &mut scratch)?;
        if noise.get_remote_static() != Some(&expected_peer[..]) {
            return Err(ChannelError::UnexpectedPeerKey);
        }
        // -> s, se
        let n = noise.write_message(&[], &mut buffer[..])?;
        write_frame(&mut stream, &buffer[..n]).await?;
        let transport = noise.into_transport_mode()?;
        stream.set_nodelay(true)?;
        Ok(Sender {
            stream,
            transport,
            buffer,
            plain: Vec::new(),
            wire: Vec::new(),
        })
    }

    /// The underlying stream, for tests that play a hostile peer.
    #[doc(hidden)]
    pub fn into_stream(self) -> TcpStream {
        self.stream
    }

    /// Whether the listener closed the connection. It never writes, so anything
    /// readable (its FIN, a reset, or bytes it had no business sending) means the
    /// connection is done. Checked before each write: a write into a connection
    /// the peer has closed still succeeds locally, and its messages would be lost
    /// rather than sent again on the next connection. (A peer that closes while
    /// a write is on its way still loses that write: delivery is best effort.)
    ///
    /// Asked of the socket itself (a non-blocking peek), not of tokio's cached
    /// readiness, which lags until the reactor has seen the peer's FIN.
    fn peer_hung_up(&self) -> bool {
        let mut byte = [std::mem::MaybeUninit::<u8>::uninit()];
        match socket2::SockRef::from(&self.stream).peek(&mut byte) {
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
            ),
            Ok(_) => true,
        }
    }

    /// Sends one message.
    pub async fn send(&mut self, message: &[u8]) -> Result<(), ChannelError> {
        self.send_all(&[message]).await
    }

    /// Sends `messages` in order, in as few chunks and with one write: many small
    /// protocol messages to one peer cost one system call and, with `TCP_NODELAY`,
    /// as few packets as their bytes need, instead of two of each per message.
    /// Refuses the whole batch, before writing anything, if one is too long.
    pub async fn send_all(&mut self, messages: &[&[u8]]) -> Result<(), ChannelError> {
        if let Some(long) = messages.iter().find(|m| m.len() > MAX_MESSAGE) {
            return Err(ChannelError::Oversized(long.len()));
        }
        if self.peer_hung_up() {
            return Err(ChannelError::Io(std::io::ErrorKind::ConnectionReset.into()));
        }
        self.plain.clear();
        for message in messages {
            // Fits: MAX_MESSAGE < u32::MAX.
            self.plain
                .extend_from_slice(&(message.len() as u32).to_be_bytes());
            self.plain.extend_from_slice(message);
        }
        self.wire.clear();
        for chunk in self.plain.chunks(MAX_CHUNK) {
            let n = self.transport.write_message(chunk, &mut self.buffer[..])?;
            let frame_len = u16::try_from(n).expect("Noise messages fit in u16");
            self.wire.extend_from_slice(&frame_len.to_be_bytes());
            self.wire.extend_from_slice(&self.buffer[..n]);
        }
        self.stream.write_all(&self.wire).await?;
        Ok(())
    }
}

/// The receiving end of a channel (the listener's side).
pub struct Receiver {
    /// Buffered: a frame's length and body, and often several frames, come in one
    /// read.
    stream: BufReader<TcpStream>,
    transport: snow::TransportState,
    remote: [u8; 32],
    /// The frame being read, and its decryption.
    buffer: Box<[u8; MAX_NOISE]>,
    chunk: Box<[u8; MAX_NOISE]>,
    /// Decrypted bytes not yet returned, from `taken` on.
    plain: Vec<u8>,
    taken: usize,
}

impl Receiver {
    /// Listen-side handshake over an accepted `stream`. The caller decides whether
    /// the proven [`Receiver::remote_key`] belongs to a participant.
    pub async fn handshake(
        mut stream: TcpStream,
        key: &StaticKey,
        prologue: &[u8],
    ) -> Result<Receiver, ChannelError> {
        let mut noise = builder(key, prologue)?.build_responder()?;
        let mut buffer = Box::new([0u8; MAX_NOISE]);
        let mut scratch = vec![0u8; MAX_NOISE];
        // -> e
        let n = read_frame(&mut stream, &mut buffer).await?;
        noise.read_message(&buffer[..n], &mut scratch)?;
        // <- e, ee, s, es
        let n = noise.write_message(&[], &mut buffer[..])?;
        write_frame(&mut stream, &buffer[..n]).await?;
        // -> s, se
        let n = read_frame(&mut stream, &mut buffer).await?;
        noise.read_message(&buffer[..n], &mut scratch)?;
        let remote: [u8; 32] = noise
            .get_remote_static()
            .and_then(|k| k.try_into().ok())
            .ok_or(ChannelError::UnexpectedPeerKey)?;
        let transport = noise.into_transport_mode()?;
        Ok(Receiver {
            // Handshake reads were exact: nothing of the stream is buffered yet.
            stream: BufReader::with_capacity(2 * MAX_NOISE, stream),
            transport,
            remote,
            buffer,
            chunk: Box::new([0u8; MAX_NOISE]),
            plain: Vec::new(),
            taken: 0,
        })
    }

    /// The static key the peer proved it holds.
    pub fn remote_key(&self) -> [u8; 32] {
        self.remote
    }

    /// The next message. Cancel-safe only between messages: dropping the future
    /// mid-message loses the connection's framing, so drop the receiver too.
    pub async fn recv(&mut self) -> Result<Vec<u8>, ChannelError> {
        loop {
            let unread = &self.plain[self.taken..];
            if let Some(len) = unread.first_chunk::<4>() {
                let len = u32::from_be_bytes(*len) as usize;
                if len > MAX_MESSAGE {
                    return Err(ChannelError::Oversized(len));
                }
                if let Some(message) = unread.get(4..4 + len) {
                    let message = message.to_vec();
                    self.taken += 4 + len;
                    return Ok(message);
                }
            }
            // Keep only what is unread before more comes.
            self.plain.drain(..self.taken);
            self.taken = 0;
            let n = read_frame(&mut self.stream, &mut self.buffer).await?;
            let m = self
                .transport
                .read_message(&self.buffer[..n], &mut self.chunk[..])?;
            self.plain.extend_from_slice(&self.chunk[..m]);
        }
    }
}
