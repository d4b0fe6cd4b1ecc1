"""Built-in English sentences: the inputs fidelity is measured on for a text model that ships its
tokenizer when the audit has no dataset (``evaluation.generated_eval_data``).

Written for this project (no third-party text). Varied topics and lengths, so that padding
and the attention mask matter, and so that each sentence has a distinct nearest neighbour
among the others for the nearest-neighbour agreement of embedding models.
"""

SENTENCES = (
    "The train to the coast leaves at seven, so we should pack the bags tonight.",
    "Quarterly revenue rose by four percent, driven mostly by subscriptions in Europe.",
    "Add the flour slowly and keep stirring until the sauce is smooth.",
    "The patient reported a mild headache and no fever after the second dose.",
    "Our team fixed the memory leak by closing the database connections after each request.",
    "It rained all weekend.",
    "The museum reopened its east wing with a new exhibition of medieval maps.",
    "Please restart the router if the connection drops again.",
    "A small dog chased the ball across the wet grass and into the pond.",
    "Interest rates are expected to stay unchanged until the end of the year.",
    "She learned to play the violin at the age of six and joined an orchestra at twelve.",
    "The compiler reports an error when a variable is used before it is declared.",
    "Thank you for your order; it will ship within two business days.",
    "Glaciers in the region have lost a third of their volume since 1980.",
    "He forgot his umbrella again.",
    "The referee stopped the match for ten minutes while the medics treated the goalkeeper.",
    "Solar panels on the school roof now cover most of its electricity needs in summer.",
    "I would like to cancel my subscription and get a refund for this month.",
    "The novel follows three generations of a family of fishermen on a northern island.",
    "Water boils at a lower temperature at high altitude because the air pressure is lower.",
    "The new phone has a brighter screen, but the battery life is disappointing.",
    "Lock the door when you leave.",
    "Researchers trained the model on images of handwritten digits and tested it on new samples.",
    "The city council approved a plan to build more cycle lanes in the centre.",
    "After the storm, volunteers cleared fallen trees from the mountain road.",
    "The contract can be terminated by either party with thirty days of written notice.",
    "My grandmother grows tomatoes, beans and potatoes in her garden every spring.",
    "The spacecraft entered orbit around the planet after a journey of seven months.",
    "This hotel was clean and quiet, and the staff were very friendly.",
    "The function returns an empty list when no element matches the condition.",
    "Prices of fresh vegetables doubled after the long drought in the south.",
    "Where is the nearest pharmacy?",
    "The choir sang an old folk song in four-part harmony at the end of the concert.",
    "Engineers replaced the bridge's steel cables after an inspection found corrosion.",
    "Students must submit their essays before midnight on Friday.",
    "The cat slept on the warm windowsill for the whole afternoon.",
    "A power outage affected thousands of homes in the northern districts last night.",
    "The recipe calls for two eggs, a cup of sugar and a pinch of salt.",
    "The film was too long, and the ending made no sense at all.",
    "Heavy traffic is expected on the motorway during the holiday weekend.",
)
