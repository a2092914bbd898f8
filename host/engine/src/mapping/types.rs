//! VRL kinds and weir field types: what an expression produces, and what a
//! destination field accepts.

use vrl::value::Kind;
use weir_types::FieldType;

/// The VRL kind of a source field of type `ty`; nullable unless required.
pub fn kind_of(ty: FieldType, required: bool) -> Kind {
    let kind = match ty {
        FieldType::Boolean => Kind::boolean(),
        FieldType::Integer => Kind::integer(),
        FieldType::Float => Kind::float(),
        FieldType::Timestamp => Kind::timestamp(),
        // Decimals travel as their canonical text, so they stay exact.
        FieldType::Decimal | FieldType::Text | FieldType::Bytes => Kind::bytes(),
    };
    if required { kind } else { kind.or_null() }
}

/// The field type an expression of `kind` produces. Mixed kinds (`string or
/// integer`, objects, arrays) produce text; the second value says so.
pub fn field_type_of(kind: &Kind) -> (FieldType, bool) {
    let mut k = kind.clone();
    k.remove_null();
    k.remove_undefined();
    if k.is_bytes() {
        (FieldType::Text, true)
    } else if k.is_integer() {
        (FieldType::Integer, true)
    } else if k.is_float() {
        (FieldType::Float, true)
    } else if k.is_boolean() {
        (FieldType::Boolean, true)
    } else if k.is_timestamp() {
        (FieldType::Timestamp, true)
    } else if {
        let mut numbers = k.clone();
        numbers.remove_integer();
        numbers.is_float()
    } {
        (FieldType::Float, true)
    } else {
        (FieldType::Text, false)
    }
}

/// Whether a value of type `from` can be written to a field of type `to`
/// without losing meaning.
pub fn compatible(from: FieldType, to: FieldType) -> bool {
    use FieldType::*;
    from == to
        || to == Text
        || matches!(
            (from, to),
            (Integer, Float | Decimal) | (Float, Decimal) | (Decimal, Float)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_field_types() {
        assert_eq!(
            field_type_of(&Kind::bytes().or_null()),
            (FieldType::Text, true)
        );
        assert_eq!(field_type_of(&Kind::integer()), (FieldType::Integer, true));
        assert_eq!(
            field_type_of(&Kind::integer().or_float()),
            (FieldType::Float, true)
        );
        assert_eq!(
            field_type_of(&Kind::bytes().or_integer()),
            (FieldType::Text, false)
        );
        assert!(compatible(FieldType::Integer, FieldType::Float));
        assert!(!compatible(FieldType::Text, FieldType::Integer));
    }
}
