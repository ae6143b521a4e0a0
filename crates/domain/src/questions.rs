//! The predefined security questions, in English and Simplified Chinese.
//!
//! Security questions are the weakest method (answers are often guessable or public); sspr
//! allows them only beside a stronger method and never for privileged accounts.

use unicode_normalization::UnicodeNormalization;

pub struct Question {
    pub id: &'static str,
    pub en: &'static str,
    pub zh: &'static str,
}

impl Question {
    pub fn text(&self, lang: &str) -> &'static str {
        if lang.starts_with("zh") {
            self.zh
        } else {
            self.en
        }
    }
}

macro_rules! q {
    ($id:literal, $en:literal, $zh:literal) => {
        Question {
            id: $id,
            en: $en,
            zh: $zh,
        }
    };
}

pub const PREDEFINED: &[Question] = &[
    q!(
        "q1",
        "In what city did you meet your first spouse or partner?",
        "你在哪个城市遇到了你的第一个配偶或伴侣？"
    ),
    q!(
        "q2",
        "In what city did your parents meet?",
        "你的父母在哪个城市相识？"
    ),
    q!(
        "q3",
        "What was the name of your first pet?",
        "你的第一只宠物叫什么名字？"
    ),
    q!(
        "q4",
        "What was the first concert you attended?",
        "你第一次去听的音乐会是什么？"
    ),
    q!(
        "q5",
        "What was the make and model of your first car?",
        "你的第一辆车是什么品牌和型号？"
    ),
    q!(
        "q6",
        "What was the name of your favourite teacher in primary school?",
        "你小学时最喜欢的老师叫什么名字？"
    ),
    q!(
        "q7",
        "What is the name of the street you grew up on?",
        "你长大的那条街叫什么名字？"
    ),
    q!(
        "q8",
        "What was your childhood nickname?",
        "你小时候的绰号是什么？"
    ),
    q!(
        "q9",
        "What was the name of your first employer?",
        "你的第一个雇主叫什么名字？"
    ),
    q!(
        "q10",
        "What is your oldest cousin's first name?",
        "你年龄最大的表亲（堂亲）的名字是什么？"
    ),
    q!(
        "q11",
        "In what city was your first job?",
        "你的第一份工作在哪个城市？"
    ),
    q!(
        "q12",
        "What was the name of your childhood best friend?",
        "你儿时最好的朋友叫什么名字？"
    ),
    q!(
        "q13",
        "What was the first book you loved?",
        "你喜欢的第一本书是什么？"
    ),
    q!(
        "q14",
        "What was your favourite food as a child?",
        "你小时候最喜欢吃的食物是什么？"
    ),
    q!(
        "q15",
        "In what town or village did you spend your summer holidays as a child?",
        "你小时候在哪个城镇或村庄度过暑假？"
    ),
    q!(
        "q16",
        "What was the name of your first stuffed animal or toy?",
        "你的第一个毛绒玩具或玩具叫什么名字？"
    ),
    q!(
        "q17",
        "What was the destination of your first trip by plane?",
        "你第一次乘飞机去了哪里？"
    ),
    q!(
        "q18",
        "What was the name of the hospital where you were born?",
        "你出生的医院叫什么名字？"
    ),
    q!(
        "q19",
        "What was your favourite subject at secondary school?",
        "你中学时最喜欢的科目是什么？"
    ),
    q!(
        "q20",
        "What was the name of your first manager?",
        "你的第一位上司叫什么名字？"
    ),
    q!(
        "q21",
        "What was the first film you saw in a cinema?",
        "你在电影院看的第一部电影是什么？"
    ),
    q!(
        "q22",
        "What is the middle name of your oldest sibling?",
        "你最年长的兄弟姐妹的中间名（或小名）是什么？"
    ),
    q!(
        "q23",
        "What was the name of the first school you attended?",
        "你上的第一所学校叫什么名字？"
    ),
    q!(
        "q24",
        "What sport did you first play in a team?",
        "你第一次参加的团队运动是什么？"
    ),
];

/// The length bounds of an answer, in characters (as in Azure AD).
pub const ANSWER_MIN: usize = 3;
pub const ANSWER_MAX: usize = 40;

/// One answer in the form that is hashed and compared: NFKC, lowercase, inner spaces folded.
/// `  New   York ` and `new york` are the same answer.
pub fn normalise_answer(raw: &str) -> String {
    raw.nfkc()
        .collect::<String>()
        .to_lowercase()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Checks one answer's length; returns the problem in words.
pub fn check_answer(raw: &str) -> Result<String, String> {
    let n = normalise_answer(raw);
    let len = n.chars().count();
    if !(ANSWER_MIN..=ANSWER_MAX).contains(&len) {
        return Err(format!(
            "each answer must be {ANSWER_MIN}–{ANSWER_MAX} characters long"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalogue_is_complete_and_unique() {
        assert!(PREDEFINED.len() >= 20);
        let mut ids: Vec<_> = PREDEFINED.iter().map(|q| q.id).collect();
        ids.sort();
        ids.dedup();
        assert_eq!(ids.len(), PREDEFINED.len());
        for q in PREDEFINED {
            assert!(q.en.ends_with('?'));
            assert!(q.zh.ends_with('？'));
        }
    }

    #[test]
    fn answers_normalise() {
        assert_eq!(normalise_answer("  New   York "), "new york");
        assert_eq!(normalise_answer("ＡＢＣ"), "abc");
        assert!(check_answer("ab").is_err());
        assert!(check_answer(&"x".repeat(41)).is_err());
        assert_eq!(check_answer("  Rex "), Ok("rex".into()));
    }
}
