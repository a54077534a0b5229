//! One DNS message as the kernel copied it (its first bytes): the header,
//! the question, and the address records of the answer, with hickory-proto
//! reading the question and the records (names, compression pointers,
//! record data). Never panics: a message that ends early keeps what was
//! read before the end.

use std::borrow::Cow;
use std::net::IpAddr;

use hickory_proto::op::Query;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

/// Length of the fixed header.
const HEADER: usize = 12;

/// Record types by number (tests).
#[cfg(test)]
const TYPE_A: u16 = 1;

/// The first question of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Question {
    /// Lower case, without the root's trailing dot ("." for the root).
    pub name: String,
    pub qtype: u16,
}

/// An answer record that says where a name is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    Addr {
        name: String,
        addr: IpAddr,
        ttl: u32,
    },
    Cname {
        name: String,
        target: String,
        ttl: u32,
    },
}

/// What could be read of one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub id: u16,
    pub response: bool,
    /// OPCODE; 0 = QUERY.
    pub opcode: u8,
    /// The header's RCODE (4 bits).
    pub rcode: u8,
    /// None when the message has no question (qdcount 0).
    pub question: Option<Question>,
    /// A, AAAA and CNAME records of the answer section, in order.
    pub answers: Vec<Answer>,
    /// An answer record could not be read (malformed, or cut off by the
    /// capture): `answers` holds the ones before it.
    pub answers_cut: bool,
}

/// Why nothing useful could be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Malformed {
    /// Fewer bytes than a header.
    Short,
    /// The question does not parse.
    Question,
}

fn name_str(n: &hickory_proto::rr::Name) -> String {
    let s = n.to_lowercase().to_ascii();
    match s.strip_suffix('.') {
        Some(t) if !t.is_empty() => t.to_string(),
        _ => s,
    }
}

/// Reads a message's header, first question and answer records.
pub fn parse(bytes: &[u8]) -> Result<Message, Malformed> {
    if bytes.len() < HEADER {
        return Err(Malformed::Short);
    }
    let be = |i: usize| u16::from_be_bytes([bytes[i], bytes[i + 1]]);
    let flags = be(2);
    let mut msg = Message {
        id: be(0),
        response: flags & 0x8000 != 0,
        opcode: ((flags >> 11) & 0xf) as u8,
        rcode: (flags & 0xf) as u8,
        question: None,
        answers: Vec::new(),
        answers_cut: false,
    };
    let (qdcount, ancount) = (be(4), be(6));
    let mut dec = BinDecoder::new(bytes);
    dec.read_slice(HEADER).map_err(|_| Malformed::Short)?;
    for i in 0..qdcount {
        let q = Query::read(&mut dec).map_err(|_| Malformed::Question)?;
        if i == 0 {
            msg.question = Some(Question {
                name: name_str(q.name()),
                qtype: u16::from(q.query_type()),
            });
        }
    }
    for _ in 0..ancount {
        let Ok(r) = Record::<RData>::read(&mut dec) else {
            msg.answers_cut = true;
            break;
        };
        let name = name_str(&r.name);
        match &r.data {
            RData::A(a) => msg.answers.push(Answer::Addr {
                name,
                addr: IpAddr::V4(a.0),
                ttl: r.ttl,
            }),
            RData::AAAA(a) => msg.answers.push(Answer::Addr {
                name,
                addr: IpAddr::V6(a.0),
                ttl: r.ttl,
            }),
            RData::CNAME(c) => msg.answers.push(Answer::Cname {
                name,
                target: name_str(&c.0),
                ttl: r.ttl,
            }),
            _ => {}
        }
    }
    Ok(msg)
}

/// The addresses of `qname` in an answer, following its CNAME chain
/// (bounded), each with the smallest TTL along its way.
pub fn addresses_of(qname: &str, answers: &[Answer]) -> Vec<(IpAddr, u32)> {
    let mut names: Vec<(&str, u32)> = vec![(qname, u32::MAX)];
    // Chains are followed in any record order, at most 16 links deep.
    for _ in 0..16 {
        let mut grew = false;
        for a in answers {
            if let Answer::Cname { name, target, ttl } = a {
                if let Some(&(_, t)) = names.iter().find(|(n, _)| n == name) {
                    if !names.iter().any(|(n, _)| n == target) {
                        names.push((target, t.min(*ttl)));
                        grew = true;
                    }
                }
            }
        }
        if !grew {
            break;
        }
    }
    answers
        .iter()
        .filter_map(|a| match a {
            Answer::Addr { name, addr, ttl } => names
                .iter()
                .find(|(n, _)| n == name)
                .map(|&(_, t)| (*addr, t.min(*ttl))),
            _ => None,
        })
        .collect()
}

/// The `qtype` label: the record type's mnemonic (`A`, `AAAA`, `SRV`, …),
/// `TYPE<n>` for types without one (RFC 3597).
pub fn qtype_name(qtype: u16) -> Cow<'static, str> {
    match RecordType::from(qtype) {
        RecordType::Unknown(_) => Cow::Owned(format!("TYPE{qtype}")),
        t => Cow::Borrowed(<&'static str>::from(t)),
    }
}

/// The `rcode` label: the RCODE's mnemonic (IANA DNS RCODEs).
pub fn rcode_name(rcode: u8) -> Cow<'static, str> {
    const NAMES: [&str; 12] = [
        "NOERROR",
        "FORMERR",
        "SERVFAIL",
        "NXDOMAIN",
        "NOTIMP",
        "REFUSED",
        "YXDOMAIN",
        "YXRRSET",
        "NXRRSET",
        "NOTAUTH",
        "NOTZONE",
        "DSOTYPENI",
    ];
    match NAMES.get(rcode as usize) {
        Some(n) => Cow::Borrowed(n),
        None => Cow::Owned(format!("RCODE{rcode}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message as Msg, MessageType, OpCode, ResponseCode};
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};
    use hickory_proto::rr::Name;
    use proptest::prelude::*;

    fn answer(rcode: ResponseCode) -> Vec<u8> {
        let mut m = Msg::new(0x1234, MessageType::Response, OpCode::Query);
        m.metadata.response_code = rcode;
        let q = Name::from_ascii("WWW.Example.com.").unwrap();
        m.add_query(Query::query(q.clone(), RecordType::A));
        let c = Name::from_ascii("edge.cdn.net.").unwrap();
        m.add_answer(Record::from_rdata(q, 300, RData::CNAME(CNAME(c.clone()))));
        m.add_answer(Record::from_rdata(
            c.clone(),
            60,
            RData::A(A::new(192, 0, 2, 7)),
        ));
        m.add_answer(Record::from_rdata(
            c,
            600,
            RData::AAAA(AAAA::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
        ));
        let other = Name::from_ascii("unrelated.org.").unwrap();
        m.add_answer(Record::from_rdata(
            other,
            5,
            RData::A(A::new(198, 51, 100, 1)),
        ));
        m.to_vec().unwrap()
    }

    #[test]
    fn reads_header_question_and_follows_cnames() {
        let m = parse(&answer(ResponseCode::NoError)).unwrap();
        assert_eq!(m.id, 0x1234);
        assert!(m.response && m.opcode == 0 && m.rcode == 0 && !m.answers_cut);
        let q = m.question.unwrap();
        assert_eq!(q.name, "www.example.com");
        assert_eq!(q.qtype, TYPE_A);
        let addrs = addresses_of(&q.name, &m.answers);
        assert_eq!(
            addrs,
            vec![
                ("192.0.2.7".parse().unwrap(), 60),
                ("2001:db8::7".parse().unwrap(), 300)
            ]
        );
        let m = parse(&answer(ResponseCode::NXDomain)).unwrap();
        assert_eq!(rcode_name(m.rcode), "NXDOMAIN");
    }

    #[test]
    fn a_cut_message_keeps_what_came_before_the_cut() {
        let full = answer(ResponseCode::NoError);
        // Cut inside the last record: the first three are kept.
        let m = parse(&full[..full.len() - 2]).unwrap();
        assert!(m.answers_cut);
        assert_eq!(m.answers.len(), 3);
        assert_eq!(parse(&full[..11]), Err(Malformed::Short));
        assert_eq!(parse(&full[..14]), Err(Malformed::Question));
    }

    #[test]
    fn names_of_types_and_rcodes() {
        assert_eq!(qtype_name(1), "A");
        assert_eq!(qtype_name(28), "AAAA");
        assert_eq!(qtype_name(33), "SRV");
        assert_eq!(qtype_name(65), "HTTPS");
        assert_eq!(qtype_name(65280), "TYPE65280");
        assert_eq!(rcode_name(2), "SERVFAIL");
        assert_eq!(rcode_name(5), "REFUSED");
        assert_eq!(rcode_name(15), "RCODE15");
    }

    #[test]
    fn cname_loops_end() {
        let a = vec![
            Answer::Cname {
                name: "a".into(),
                target: "b".into(),
                ttl: 1,
            },
            Answer::Cname {
                name: "b".into(),
                target: "a".into(),
                ttl: 1,
            },
        ];
        assert!(addresses_of("a", &a).is_empty());
    }

    proptest! {
        /// Any bytes: an answer or an error, never a panic; and every
        /// prefix of a real answer parses or fails cleanly.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn every_prefix_and_flipped_byte_is_handled(cut in 0usize..200, flip in 0usize..200, bit in 0u8..8) {
            let mut full = answer(ResponseCode::NoError);
            let i = flip % full.len();
            full[i] ^= 1 << bit;
            let _ = parse(&full[..cut.min(full.len())]);
        }
    }
}
